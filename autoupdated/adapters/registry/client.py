"""`RegistryClient`: manifest HEAD/GET against the registry HTTP API v2, one per run.

* One `httpx.AsyncClient` per (registry host, TLS settings), so connections are reused.
* Bounded concurrency per registry host (default 16 requests in flight).
* No `/v2/` ping: the manifest request goes out directly and a 401 challenge tells the
  auth scheme.  The first request to a host goes alone; once the host's scheme (https/http)
  and auth challenge are known (its first answer), the others follow in parallel and
  authenticate up front, while the first one fetches its token.
* Bearer tokens cached per (realm, service, scope, credentials) for `expires_in` minus a
  margin; concurrent callers share one token request.
* Insecure registries (registries.conf or tls_verify=False): HTTPS without verification,
  then plain HTTP, as containers/image does.  Never plain HTTP otherwise.
* Redirects followed by hand: credentials are dropped when the host or scheme changes, and
  an HTTPS→HTTP redirect is refused unless the registry is insecure.
* Backoff (autoupdated/retry.py): 429 waits for Retry-After (bounded, few tries, one request at
  a time per host meanwhile), `RateLimit-Remaining: 0` stops asking that host for the run, a 5xx
  is tried once more after a short random delay.
* Errors are `RegistryError`s whose text names the registry and reference, says what to do,
  and has every known secret scrubbed out.  Logs never show headers, tokens or passwords.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from autoupdated import manifest as mf
from autoupdated.adapters.registry import retry, wwwauth
from autoupdated.adapters.registry.tlsconfig import TLSConfig, TLSConfigError, TLSSettings
from autoupdated.errors import (
    AccessDenied,
    AuthenticationRequired,
    ManifestUnknown,
    RegistryBlocked,
    RegistryConfigError,
    RegistryConnectionError,
    RegistryError,
    RegistryLies,
    RegistryProtocolError,
    RegistryServerError,
    RegistryTimeout,
    RegistryTLSError,
    TooManyRequests,
)
from autoupdated.manifest import ManifestBody, ManifestHead
from autoupdated.model import Credentials
from autoupdated.reference import Reference
from autoupdated.secrets import Secrets

__all__ = ["DEFAULT_MAX_PER_REGISTRY", "DEFAULT_TIMEOUT", "ManifestBody", "ManifestHead", "RegistryClient"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_PER_REGISTRY = 16
DEFAULT_TOKEN_LIFETIME = 60  # seconds; containers/image's minimum too
USER_AGENT = "autoupdated/0.1 (podman auto-update compatible)"
_MAX_REDIRECTS = 5
_MAX_ERROR_BODY = 64 * 1024
_MAX_TOKEN_BODY = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LOGIN_HINT = "log in with `podman login {host}` or set an authfile (--authfile or the {label} label)"
_INSECURE_HINT = (
    "add the registry's CA certificate as {certs}/{host}/ca.crt, or (if you trust the network) mark it "
    'insecure in registries.conf ([[registry]] location = "{host}", insecure = true) '
    "or run with --tls-verify=false"
)


@dataclass(slots=True)
class _Response:
    status: int
    headers: httpx.Headers
    body: bytes
    url: str
    reason: str


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Ask:
    """One manifest request as the auth and token steps see it: where, what, as whom."""

    state: _Host
    method: str
    ref: Reference
    reference: str
    credentials: Credentials | None
    what: str  # "manifest TAG in NAME", for messages

    @property
    def path(self) -> str:
        return f"/v2/{self.ref.repository}/manifests/{self.reference}"

    @property
    def scope(self) -> str:
        return f"repository:{self.ref.repository}:pull"


@dataclass(slots=True)
class _Host:
    """Per (host, TLS settings) state for the run."""

    host: str
    settings: TLSSettings
    client: httpx.AsyncClient
    scheme: str | None = None  # "https" or "http" once a request got through
    challenge: wwwauth.Challenge | None = None  # the auth scheme once a 401 told it
    probed: bool = False
    probing: asyncio.Event | None = None  # set once the first request learned scheme and challenge
    backoff: retry.HostBackoff | None = None
    throttle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _AuthFailed(Exception):
    """Internal: the token endpoint refused; carries the status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _certs_hint_dir(settings: TLSSettings) -> str:
    if settings.cert_dir:
        return settings.cert_dir.rsplit("/", 1)[0]
    return "/etc/containers/certs.d"


_X509_REASONS = {
    2: "certificate signed by unknown authority",
    18: "certificate signed by unknown authority",
    19: "certificate signed by unknown authority",
    20: "certificate signed by unknown authority",
    21: "certificate signed by unknown authority",
    9: "certificate has expired or is not yet valid",
    10: "certificate has expired or is not yet valid",
    23: "certificate has been revoked",
}


def _exception_chain(err: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _registry_error_detail(body: bytes) -> str:
    """`CODE: message` from a distribution error body, or ""."""
    try:
        doc = json.loads(body[:_MAX_ERROR_BODY])
    except (ValueError, RecursionError):
        return ""
    if not isinstance(doc, dict):
        return ""
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        message = errors[0].get("message")
        parts = [str(p) for p in (code, message) if isinstance(p, str) and p]
        return ": ".join(parts)[:300]
    for key in ("error", "message", "details"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            return value[:300]
    return ""


class RegistryClient:
    """Talks to registries for one run.  Use as an async context manager, or call aclose()."""

    def __init__(
        self,
        *,
        tls: TLSConfig | None = None,
        tls_verify: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        per_registry_concurrency: int = DEFAULT_MAX_PER_REGISTRY,
        transport: httpx.AsyncBaseTransport | None = None,
        token_margin: float = 10.0,
        user_agent: str = USER_AGENT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        backoff: Callable[[str], retry.HostBackoff] = retry.HostBackoff,
    ) -> None:
        if per_registry_concurrency < 1:
            raise ValueError("per_registry_concurrency must be at least 1")
        self._tls = tls
        self._tls_verify = tls_verify
        self.timeout = timeout
        self.per_registry_concurrency = per_registry_concurrency
        self._transport = transport
        self._token_margin = token_margin
        self._user_agent = user_agent
        self._clock = clock
        self._sleep = sleep
        self._new_backoff = backoff
        self._hosts: dict[tuple[str, TLSSettings], _Host] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._tokens: dict[tuple[str, str, str, Credentials | None], _Token | asyncio.Task[_Token]] = {}
        self._secrets = Secrets()
        self.token_requests = 0  # how many token requests went out (for tests and debug logs)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for task in [t for t in self._tokens.values() if isinstance(t, asyncio.Task)]:
            task.cancel()
        hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            await host.client.aclose()

    # -- configuration -------------------------------------------------------------------

    @property
    def tls(self) -> TLSConfig:
        if self._tls is None:
            try:
                self._tls = TLSConfig(tls_verify=self._tls_verify)
            except TLSConfigError as err:
                raise RegistryConfigError(str(err)) from None
        return self._tls

    def tls_verify_for(self, ref: Reference) -> bool | None:
        """What to pass to podman's pull as tlsVerify for `ref` (see TLSConfig.tls_verify_for)."""
        return self.tls.tls_verify_for(ref.name)

    def _host_state(self, ref: Reference) -> _Host:
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
            try:
                verify: ssl.SSLContext | bool = settings.ssl_context()
            except TLSConfigError as err:
                raise RegistryConfigError(f"{err} (needed for {ref})") from None
            client = httpx.AsyncClient(
                verify=verify,
                transport=self._transport,
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                # The semaphore bounds requests to the registry; the pool also carries the token
                # service's requests, so it is larger: otherwise each side closes the other's idle
                # connections to make room and nothing is reused.
                limits=httpx.Limits(
                    max_connections=2 * self.per_registry_concurrency,
                    max_keepalive_connections=2 * self.per_registry_concurrency,
                ),
                headers={"User-Agent": self._user_agent},
            )
            state = _Host(host=host, settings=settings, client=client)
            self._hosts[key] = state
        return state

    def _semaphore(self, host: str) -> asyncio.Semaphore:
        sem = self._semaphores.get(host)
        if sem is None:
            sem = self._semaphores[host] = asyncio.Semaphore(self.per_registry_concurrency)
        return sem

    # -- secrets -------------------------------------------------------------------------

    def _remember_secrets(self, credentials: Credentials | None) -> None:
        self._secrets.add_credentials(credentials)

    def _scrub(self, text: str) -> str:
        return self._secrets.scrub(text)

    def scrub(self, text: str) -> str:
        """`text` without any secret this client has seen (the comparer's last-resort errors)."""
        return self._secrets.scrub(text)

    def _error(self, cls: type[RegistryError], message: str, **kwargs: Any) -> RegistryError:
        return cls(self._scrub(message), **kwargs)

    # -- public API ----------------------------------------------------------------------

    async def head_manifest(self, ref: Reference, reference: str, credentials: Credentials | None) -> ManifestHead:
        """HEAD /v2/<repo>/manifests/<reference> (tag or digest)."""
        what = self._what(ref, reference)
        response = await self._request("HEAD", ref, reference, credentials, what)
        digest = response.headers.get("Docker-Content-Digest")
        if digest is not None:
            digest = digest.strip()
            try:
                mf.validate_digest(digest)
            except mf.ManifestError as err:
                raise self._error(
                    RegistryProtocolError, f"registry {ref.api_host} sent a malformed digest for {what}: {err}"
                ) from None
        return ManifestHead(digest or None, mf.normalize_media_type(response.headers.get("Content-Type")))

    async def get_manifest(
        self,
        ref: Reference,
        reference: str,
        credentials: Credentials | None,
        *,
        expected_digest: str | None = None,
    ) -> ManifestBody:
        """GET the manifest; the body's digest is checked against `expected_digest` (or the
        reference when it is a digest, or the response's Docker-Content-Digest)."""
        what = self._what(ref, reference)
        response = await self._request("GET", ref, reference, credentials, what)
        body = response.body
        header_digest = response.headers.get("Docker-Content-Digest")
        announced = expected_digest
        if announced is None and ":" in reference and not reference.startswith(":"):
            try:
                mf.validate_digest(reference)
                announced = reference
            except mf.ManifestError:
                announced = None
        if announced is None and header_digest:
            announced = header_digest.strip()
        media_type = mf.normalize_media_type(response.headers.get("Content-Type"))
        if announced is None:
            if media_type == mf.DOCKER_V2_SCHEMA1_SIGNED:
                raise self._error(
                    RegistryProtocolError,
                    f"{what}: the registry {ref.api_host} serves a signed schema1 manifest without "
                    "Docker-Content-Digest; its digest cannot be computed from the body",
                )
            return ManifestBody(body, media_type, mf.compute_digest(body))
        try:
            algorithm, _ = mf.validate_digest(announced)
            actual = mf.compute_digest(body, algorithm)
        except mf.ManifestError as err:
            raise self._error(RegistryProtocolError, f"{what}: {err}") from None
        if actual != announced:
            raise self._error(
                RegistryLies,
                f"registry lies: {ref.api_host} announced digest {announced} for {what} but served "
                f"content with digest {actual}; not trusting it (a caching proxy or a broken registry?)",
            )
        return ManifestBody(body, media_type, announced)

    # -- request machinery ---------------------------------------------------------------

    @staticmethod
    def _what(ref: Reference, reference: str) -> str:
        return f"manifest {reference} in {ref.name}"

    async def _request(
        self,
        method: str,
        ref: Reference,
        reference: str,
        credentials: Credentials | None,
        what: str,
    ) -> _Response:
        """One manifest request, asked again as the host's backoff says (429, 5xx)."""
        self._remember_secrets(credentials)
        state = self._host_state(ref)
        ask = _Ask(state, method, ref, reference, credentials, what)
        if state.backoff is None:
            state.backoff = self._new_backoff(state.host)
        backoff = state.backoff
        tries = 0
        while True:
            if backoff.exhausted is not None:
                raise self._error(
                    TooManyRequests, f"not asking {ref.domain} for {what}: {backoff.exhausted}", retry_after=None
                )
            tries += 1
            if backoff.throttled:
                async with state.throttle_lock:  # one request at a time while the host throttles us
                    await self._wait_for(backoff)
                    response = await self._request_once(ask)
            else:
                response = await self._request_once(ask)
            backoff.after_answer(response.status, response.headers)
            if response.status == 429:
                decision = backoff.after_429(tries, response.headers.get("Retry-After"), self._clock())
                if not decision.retry:
                    asked = retry.retry_after(response.headers.get("Retry-After"))
                    after = f"retry after {asked:.0f} s; " if asked is not None else ""
                    raise self._error(
                        TooManyRequests,
                        f"too many requests to {ref.domain} ({method} {what}): the registry rate-limits us; "
                        f"{after}{decision.reason}",
                        retry_after=asked,
                    )
                log.info(
                    "%s answered 429 Too Many Requests for %s: waiting %.1f s (try %d of %d)",
                    ref.domain,
                    what,
                    decision.wait,
                    tries,
                    backoff.max_tries,
                )
                continue
            if 500 <= response.status < 600:
                decision = backoff.after_server_error(tries, response.status)
                if decision.retry:
                    log.info(
                        "%s answered HTTP %d for %s: trying once more in %.1f s",
                        ref.domain,
                        response.status,
                        what,
                        decision.wait,
                    )
                    await self._sleep(decision.wait)
                    continue
            return self._check_status(response, ask)

    async def _wait_for(self, backoff: retry.HostBackoff) -> None:
        delay = backoff.not_before - self._clock()
        if delay > 0:
            await self._sleep(delay)

    async def _request_once(self, ask: _Ask) -> _Response:
        state = ask.state
        if not state.probed:
            if state.probing is None:
                state.probing = asyncio.Event()
                try:
                    return await self._authenticated(ask)
                finally:
                    self._probed(state)
            await state.probing.wait()
        return await self._authenticated(ask)

    @staticmethod
    def _probed(state: _Host) -> None:
        """The host's scheme and auth challenge are known (or its first request ended): let the
        requests waiting for that go."""
        state.probed = True
        if state.probing is not None:
            state.probing.set()

    async def _authenticated(self, ask: _Ask) -> _Response:
        state, scope = ask.state, ask.scope
        headers = {"Accept": mf.ACCEPT}
        sent_auth = False
        if state.challenge is not None:
            authorization = await self._authorization(ask, state.challenge, scope)
            if authorization is not None:
                headers["Authorization"] = authorization
                sent_auth = True
        response = await self._send(state, ask.method, ask.path, headers, ask.what)
        if response.status != 401:
            return response
        challenge = self._pick_challenge(ask, response)
        if challenge is None:
            return response  # no usable challenge: reported as authentication required
        if challenge.scheme == "basic" and sent_auth and state.challenge == challenge:
            return response  # the credentials were refused
        state.challenge = challenge
        self._probed(state)  # the others need not wait for this request's token
        wanted_scope = challenge.get("scope") or scope
        if challenge.scheme == "bearer" and sent_auth:
            # A cached token was refused (expired early, or another scope is wanted): one fresh
            # try.  Forget only that very token, so concurrent refusals share one new request.
            refused = headers["Authorization"].removeprefix("Bearer ")
            self._forget_token(challenge, wanted_scope, ask.credentials, refused)
            self._forget_token(challenge, scope, ask.credentials, refused)
        authorization = await self._authorization(ask, challenge, wanted_scope)
        if authorization is None:
            return response
        headers["Authorization"] = authorization
        return await self._send(state, ask.method, ask.path, headers, ask.what)

    def _pick_challenge(self, ask: _Ask, response: _Response) -> wwwauth.Challenge | None:
        state, what = ask.state, ask.what
        try:
            challenges = wwwauth.parse_all(response.headers.get_list("WWW-Authenticate"))
        except wwwauth.WWWAuthenticateError as err:
            raise self._error(
                RegistryProtocolError, f"registry {state.host} answered 401 for {what} with {err}"
            ) from None
        for challenge in challenges:
            if challenge.scheme == "bearer" and not challenge.realm:
                continue
            if challenge.scheme in ("basic", "bearer"):
                return challenge
        if challenges:
            schemes = ", ".join(sorted({c.scheme for c in challenges}))
            raise self._error(
                AuthenticationRequired,
                f"authentication required: registry {state.host} asks for an unsupported auth scheme "
                f"({schemes}) for {what}",
                status=401,
            )
        return None

    async def _authorization(self, ask: _Ask, challenge: wwwauth.Challenge, scope: str) -> str | None:
        credentials = ask.credentials
        if challenge.scheme == "basic":
            if credentials is None or not (credentials.username or credentials.password):
                return None
            raw = f"{credentials.username}:{credentials.password}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        token = await self._token(ask, challenge, scope)
        return f"Bearer {token}"

    # -- bearer tokens -------------------------------------------------------------------

    def _token_key(
        self, challenge: wwwauth.Challenge, scope: str, credentials: Credentials | None
    ) -> tuple[str, str, str, Credentials | None]:
        return (challenge.realm or "", challenge.get("service") or "", scope, credentials)

    def _forget_token(
        self, challenge: wwwauth.Challenge, scope: str, credentials: Credentials | None, value: str
    ) -> None:
        key = self._token_key(challenge, scope, credentials)
        entry = self._tokens.get(key)
        if isinstance(entry, _Token) and entry.value == value:
            del self._tokens[key]

    async def _token(self, ask: _Ask, challenge: wwwauth.Challenge, scope: str) -> str:
        key = self._token_key(challenge, scope, ask.credentials)
        entry = self._tokens.get(key)
        if isinstance(entry, _Token):
            if entry.expires_at > self._clock():
                return entry.value
            del self._tokens[key]
            entry = None
        if entry is None:
            entry = asyncio.ensure_future(self._fetch_token(ask, challenge, scope, key))
            self._tokens[key] = entry
        token = await asyncio.shield(entry)
        return token.value

    async def _fetch_token(
        self, ask: _Ask, challenge: wwwauth.Challenge, scope: str, key: tuple[str, str, str, Credentials | None]
    ) -> _Token:
        try:
            token = await self._request_token(ask, challenge, scope)
        except BaseException:
            self._tokens.pop(key, None)
            raise
        self._tokens[key] = token
        return token

    async def _request_token(self, ask: _Ask, challenge: wwwauth.Challenge, scope: str) -> _Token:
        state, ref, credentials, what = ask.state, ask.ref, ask.credentials, ask.what
        realm = challenge.realm or ""
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise self._error(RegistryProtocolError, f"registry {state.host} gave an unusable token realm for {what}")
        has_secret = credentials is not None and bool(credentials.password or credentials.identity_token)
        if parts.scheme == "http" and has_secret and not state.settings.allow_http:
            raise self._error(
                RegistryTLSError,
                f"registry {state.host} wants credentials sent to a plain-HTTP token service "
                f"({parts.scheme}://{parts.netloc}); refusing, since the registry is not marked insecure",
            )
        params: dict[str, str] = {}
        service = challenge.get("service")
        if service:
            params["service"] = service
        if scope:
            params["scope"] = scope
        request_headers: dict[str, str] = {}
        method = "GET"
        data: dict[str, str] | None = None
        if credentials is not None and credentials.identity_token:
            method = "POST"
            data = {
                **params,
                "grant_type": "refresh_token",
                "refresh_token": credentials.identity_token,
                "client_id": "autoupdated",
            }
            params = {}
        elif credentials is not None and (credentials.username or credentials.password):
            raw = f"{credentials.username}:{credentials.password}".encode()
            request_headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        log.debug("requesting a bearer token from %s (service=%r, scope=%r)", realm, service, scope)
        self.token_requests += 1
        try:
            async with asyncio.timeout(self.timeout):
                request = state.client.build_request(
                    method, realm, params=params or None, data=data, headers=request_headers
                )
                response = await state.client.send(request, stream=True)
                try:
                    body = await self._read_body(response, _MAX_TOKEN_BODY)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise self._error(
                RegistryTimeout,
                f"timed out after {self.timeout:g} s getting a token from {parts.netloc} for {what}",
            ) from None
        except (httpx.HTTPError, ssl.SSLError, OSError) as err:
            raise self._transport_error(err, state, parts.netloc, what, "token request") from None
        if response.status_code in (401, 403):
            detail = _registry_error_detail(body)
            hint = _LOGIN_HINT.format(host=ref.domain, label="io.containers.autoupdate.authfile")
            who = (
                f"the credentials of user {credentials.username!r}"
                if credentials is not None and (credentials.username or credentials.identity_token)
                else "anonymous access"
            )
            cls: type[RegistryError] = AuthenticationRequired if response.status_code == 401 else AccessDenied
            prefix = "authentication required" if response.status_code == 401 else "access denied"
            raise self._error(
                cls,
                f"{prefix}: the token service of {ref.domain} refused {who} for {what}"
                f"{f' ({detail})' if detail else ''}; {hint}",
                status=response.status_code,
            )
        if response.status_code == 429:
            retry = _retry_after(response.headers.get("Retry-After"))
            raise self._error(
                TooManyRequests,
                f"too many requests: the token service of {ref.domain} rate-limits us ({what})"
                f"{f'; retry after {retry:.0f} s' if retry is not None else ''}",
                retry_after=retry,
            )
        if response.status_code != 200:
            detail = _registry_error_detail(body)
            raise self._error(
                RegistryServerError,
                f"getting a token from {parts.netloc} for {what} failed: HTTP {response.status_code}"
                f"{f' ({detail})' if detail else ''}",
                status=response.status_code,
            )
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            raise self._error(RegistryProtocolError, f"the token service of {ref.domain} sent no JSON object")
        value = doc.get("token") or doc.get("access_token")
        if not isinstance(value, str) or not value:
            raise self._error(RegistryProtocolError, f"the token service of {ref.domain} sent no token")
        self._secrets.add(value)
        refresh = doc.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            self._secrets.add(refresh)
        lifetime = doc.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime < DEFAULT_TOKEN_LIFETIME:
            lifetime = DEFAULT_TOKEN_LIFETIME
        margin = min(self._token_margin, float(lifetime) / 2)
        return _Token(value, self._clock() + float(lifetime) - margin)

    # -- HTTP ----------------------------------------------------------------------------

    async def _read_body(self, response: httpx.Response, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                raise _BodyTooLarge(total)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _send(self, state: _Host, method: str, path: str, headers: Mapping[str, str], what: str) -> _Response:
        schemes = [state.scheme] if state.scheme else (["https", "http"] if state.settings.allow_http else ["https"])
        https_error: RegistryError | None = None
        for scheme in schemes:
            url = f"{scheme}://{state.host}{path}"
            try:
                async with self._semaphore(state.host):
                    async with asyncio.timeout(self.timeout):
                        response = await self._follow(state, method, url, dict(headers), what)
            except TimeoutError:
                raise self._error(
                    RegistryTimeout,
                    f"timed out after {self.timeout:g} s talking to {state.host} ({method} {what}); "
                    "is the registry reachable?",
                ) from None
            except _BodyTooLarge as err:
                raise self._error(
                    RegistryProtocolError,
                    f"registry {state.host} sent {err.size}+ bytes for {what}: more than the "
                    f"{mf.MAX_MANIFEST_SIZE} bytes a manifest may have",
                ) from None
            except (httpx.HTTPError, ssl.SSLError, OSError) as err:
                mapped = self._transport_error(err, state, state.host, what, method)
                if scheme == "https" and "http" in schemes:
                    log.debug("HTTPS to insecure registry %s failed (%s); trying plain HTTP", state.host, mapped)
                    https_error = mapped
                    continue
                if https_error is not None:
                    if str(mapped) == str(https_error):  # e.g. connection refused: say it once
                        raise self._error(type(https_error), f"{https_error} (over HTTPS and plain HTTP)") from None
                    raise self._error(type(https_error), f"{https_error} (plain HTTP failed too: {mapped})") from None
                raise mapped from None
            if state.scheme is None:
                state.scheme = scheme
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _follow(self, state: _Host, method: str, url: str, headers: dict[str, str], what: str) -> _Response:
        origin = urlsplit(url)
        for _ in range(_MAX_REDIRECTS + 1):
            request = state.client.build_request(method, url, headers=headers)
            response = await state.client.send(request, stream=True)
            try:
                log.debug("%s %s -> %d", method, url, response.status_code)
                location = response.headers.get("Location")
                if response.status_code in _REDIRECTS and location:
                    target = urlsplit(urljoin(url, location))
                    if target.scheme not in ("http", "https"):
                        raise self._error(
                            RegistryProtocolError, f"registry {state.host} redirected {what} to a non-HTTP URL"
                        )
                    if target.scheme == "http" and origin.scheme == "https" and not state.settings.allow_http:
                        raise self._error(
                            RegistryTLSError,
                            f"registry {state.host} redirected {what} from HTTPS to plain HTTP "
                            f"({target.netloc}); refusing, since the registry is not marked insecure",
                        )
                    if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
                        headers.pop("Authorization", None)  # never hand credentials to another host
                    if response.status_code == 303 and method != "HEAD":
                        method = "GET"
                    url = target.geturl()
                    continue
                limit = mf.MAX_MANIFEST_SIZE if response.status_code == 200 else _MAX_ERROR_BODY
                # Read even a HEAD's (empty) body: a response left unread closes its connection
                # instead of returning it to the pool, and every HEAD would pay a new TCP connect.
                body = await self._read_body(response, limit)
                return _Response(response.status_code, response.headers, body, url, response.reason_phrase)
            finally:
                await response.aclose()
        raise self._error(RegistryProtocolError, f"registry {state.host} redirected {what} too many times")

    def _transport_error(self, err: BaseException, state: _Host, host: str, what: str, action: str) -> RegistryError:
        certs = _certs_hint_dir(state.settings)
        for cause in _exception_chain(err):
            if isinstance(cause, ssl.SSLCertVerificationError):
                code = cause.verify_code
                if code in (62, 63, 64):  # host name, email, IP address mismatch
                    reason = f"certificate is not valid for {host.rsplit(':', 1)[0]}"
                else:
                    reason = _X509_REASONS.get(code) or (cause.verify_message or "certificate verify failed")
                return self._error(
                    RegistryTLSError,
                    f"x509: {reason}: TLS verification of {host} failed ({action} {what}); "
                    + _INSECURE_HINT.format(certs=certs, host=host),
                )
            if isinstance(cause, ssl.SSLError):
                reason = getattr(cause, "reason", None) or str(cause)
                text = f"{reason} {cause}".lower()
                if "wrong_version_number" in text or "wrong version number" in text:
                    return self._error(
                        RegistryTLSError,
                        f"TLS handshake with {host} failed ({action} {what}): the server does not speak TLS; "
                        "if it is a plain-HTTP registry, mark it insecure in registries.conf",
                    )
                if any(
                    s in text
                    for s in (
                        "certificate required",
                        "certificate_required",
                        "bad certificate",
                        "bad_certificate",
                        "unknown ca",
                        "unknown_ca",
                    )
                ):
                    return self._error(
                        RegistryTLSError,
                        f"TLS handshake with {host} failed ({action} {what}): the registry refused our client "
                        f"certificate or wants one ({reason}); put a client certificate the registry trusts in "
                        f"{certs}/{host}/ as client.cert and client.key",
                    )
                return self._error(
                    RegistryTLSError,
                    f"TLS handshake with {host} failed ({action} {what}): {reason}",
                )
            if isinstance(cause, ConnectionRefusedError):
                return self._error(
                    RegistryConnectionError,
                    f"connection refused by {host} ({action} {what}); is the registry running and reachable?",
                )
        if isinstance(err, httpx.TimeoutException):
            return self._error(
                RegistryTimeout,
                f"timed out after {self.timeout:g} s talking to {host} ({action} {what}); is the registry reachable?",
            )
        if isinstance(err, httpx.ConnectError):
            detail = str(err) or type(err).__name__
            return self._error(RegistryConnectionError, f"cannot connect to {host} ({action} {what}): {detail}")
        detail = str(err) or type(err).__name__
        return self._error(
            RegistryConnectionError, f"talking to {host} failed ({action} {what}): {type(err).__name__}: {detail}"
        )

    def _check_status(self, response: _Response, ask: _Ask) -> _Response:
        method, ref, reference, credentials, what = ask.method, ask.ref, ask.reference, ask.credentials, ask.what
        status = response.status
        if status == 200:
            return response
        host = ref.api_host
        detail = _registry_error_detail(response.body)
        suffix = f" ({detail})" if detail else ""
        hint = _LOGIN_HINT.format(host=ref.domain, label="io.containers.autoupdate.authfile")
        if status == 401:
            if credentials is None:
                message = (
                    f"authentication required: registry {ref.domain} needs credentials to read {what} "
                    f"and none were found{suffix}; {hint}"
                )
            else:
                who = credentials.username or "the identity token"
                message = (
                    f"authentication required: registry {ref.domain} refused the credentials of "
                    f"{who!r} for {what}{suffix}; {hint}"
                )
            raise self._error(AuthenticationRequired, message, status=status)
        if status == 403:
            raise self._error(
                AccessDenied,
                f"access denied: registry {ref.domain} does not let "
                f"{'anonymous users' if credentials is None else repr(credentials.username)} read {what}"
                f"{suffix}; check the repository name and your permissions, or {hint}",
                status=status,
            )
        if status == 404:
            kind = "digest" if ":" in reference else "tag"
            raise self._error(
                ManifestUnknown,
                f"manifest unknown: reading {what}: registry {ref.domain} has no {kind} {reference!r} "
                f"in repository {ref.repository!r}{suffix}; check the image name and tag ({ref})",
                status=status,
            )
        if status == 429:
            retry = _retry_after(response.headers.get("Retry-After"))
            after = f"; retry after {retry:.0f} s" if retry is not None else "; try again later"
            raise self._error(
                TooManyRequests,
                f"too many requests to {ref.domain} ({method} {what}): the registry rate-limits us{after}",
                retry_after=retry,
            )
        if 500 <= status < 600:
            raise self._error(
                RegistryServerError,
                f"registry {host} failed reading {what}: HTTP {status} {response.reason}{suffix}; "
                "this is a registry-side problem, try again later",
                status=status,
            )
        raise self._error(
            RegistryServerError,
            f"registry {host} answered HTTP {status} {response.reason} reading {what}{suffix}",
            status=status,
        )


class _BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size

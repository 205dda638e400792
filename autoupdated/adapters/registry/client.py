"""`RegistryClient`: manifest HEAD/GET against the registry HTTP API v2, one per run.

The client asks; the modules beside it do one step each:

* hosts.py: per (host, TLS settings) state and the httpx client it owns; bounded concurrency
  per registry host (default 16 requests in flight).
* transport.py: sending, the https→http fallback for insecure registries, redirects, body
  limits, and the one mapping of httpx/ssl/OS errors to RegistryErrors.
* auth.py and token.py: the 401 challenge and the bearer token flow (pure request builder and
  answer parser, a shared in-flight cache).
* status.py: a manifest answer's HTTP status as a RegistryError.
* retry.py: backoff decisions (429 Retry-After, RateLimit-Remaining, 5xx); the loop here obeys.

The first request to a host goes alone; once the host's scheme and auth challenge are known
(its first answer), the others follow in parallel and authenticate up front.

Errors are `RegistryError`s whose text names the registry and reference and says what to do;
every one leaves through `_scrubbed`, so no known secret is in it.  Logs never show headers,
tokens or passwords.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import httpx

from autoupdated import manifest as mf
from autoupdated.adapters.registry import observe, retry
from autoupdated.adapters.registry.auth import Auth
from autoupdated.adapters.registry.hosts import Ask, HostFacts, Hosts
from autoupdated.adapters.registry.status import check_status
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.adapters.registry.transport import Response, Transport
from autoupdated.controls.tags import next_page
from autoupdated.errors import RegistryError, RegistryLies, RegistryProtocolError, TooManyRequests
from autoupdated.manifest import ManifestBody, ManifestHead
from autoupdated.model import Credentials, Platform
from autoupdated.reference import Reference
from autoupdated.secrets import Secrets, clip

__all__ = ["DEFAULT_MAX_PER_REGISTRY", "DEFAULT_TIMEOUT", "ManifestBody", "ManifestHead", "RegistryClient"]

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_PER_REGISTRY = 16
USER_AGENT = "autoupdated/0.1 (podman auto-update compatible)"
TAGS_PAGE = 100  # tags asked per page of tags/list
MAX_TAG_PAGES = 1000


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
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        backoff: Callable[[str], retry.HostBackoff] = retry.HostBackoff,
        facts: HostFacts | None = None,
    ) -> None:
        if per_registry_concurrency < 1:
            raise ValueError("per_registry_concurrency must be at least 1")
        self.timeout = timeout
        self.per_registry_concurrency = per_registry_concurrency
        self._clock = clock
        self._sleep = sleep
        self._secrets = Secrets()
        self._hosts = Hosts(
            tls=tls,
            tls_verify=tls_verify,
            timeout=timeout,
            per_registry_concurrency=per_registry_concurrency,
            transport=transport,
            user_agent=user_agent,
            backoff=backoff,
            facts=facts,
        )
        self._auth = Auth(
            Transport(timeout=timeout, secrets=self._secrets), self._secrets, clock=clock, token_margin=token_margin
        )
        self._facts = facts
        if facts is not None:
            for token in facts.tokens.values():
                self._secrets.add(token.value)  # scrubbed from this run's texts as well
                self._secrets.add(token.refresh)
            self._auth.tokens.seed(facts.tokens)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._facts is not None:
            self._facts.tokens = self._auth.tokens.unexpired()
        self._auth.tokens.cancel()
        await self._hosts.aclose()

    @property
    def tls(self) -> TLSConfig:
        return self._hosts.tls

    @property
    def token_requests(self) -> int:
        """How many token requests went out (for tests and debug logs)."""
        return self._auth.token_requests

    def tls_verify_for(self, ref: Reference) -> bool | None:
        """What to pass to podman's pull as tlsVerify for `ref` (see TLSConfig.tls_verify_for)."""
        return self.tls.tls_verify_for(ref.name)

    def _scrub(self, text: str) -> str:
        return self._secrets.scrub(text)

    def scrub(self, text: str) -> str:
        """`text` without any secret this client has seen (the comparer's last-resort errors)."""
        return self._secrets.scrub(text)

    def _scrubbed(self, err: RegistryError) -> RegistryError:
        """The error boundary's last step: no known secret leaves in an error text."""
        text = self._secrets.scrub(err.message)
        if text != err.message:
            err.message = text
            err.args = (text,)
        return err

    # -- public API ----------------------------------------------------------------------

    async def head_manifest(self, ref: Reference, reference: str, credentials: Credentials | None) -> ManifestHead:
        """HEAD /v2/<repo>/manifests/<reference> (tag or digest), from the first of the pull's
        sources (registries.conf mirrors, then the rewritten location) that answers."""
        return await self._from_sources(ref, reference, lambda source: self._head(source, reference, credentials))

    def sources(self, ref: Reference, reference: str) -> list[Reference]:
        """Where a pull of `ref` looks, in order (registries.conf `prefix`/`location`, mirrors)."""
        names = self.tls.pull_sources(f"{ref.domain}/{ref.repository}", by_digest=_digest_of(reference) is not None)
        sources = []
        for name in names:
            domain, _, path = name.partition("/")
            same = domain == ref.domain and path == ref.repository
            sources.append(ref if same else Reference(domain, path, ref.tag, ref.digest))
        return sources

    async def _from_sources(
        self, ref: Reference, reference: str, ask: Callable[[Reference], Awaitable[T]]
    ) -> T:
        """As a pull does: each source in turn until one answers; the last one's error otherwise."""
        sources = self.sources(ref, reference)
        for i, source in enumerate(sources):
            try:
                return await ask(source)
            except RegistryError as err:
                if i == len(sources) - 1:
                    raise self._scrubbed(err) from None
                log.debug("%s: source %s failed (%s); trying the next", ref, source.name, self._scrub(str(err)))
        raise AssertionError("pull_sources is never empty")

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
        return await self._from_sources(
            ref, reference, lambda source: self._get(source, reference, credentials, expected_digest)
        )

    async def list_tags(self, ref: Reference, credentials: Credentials | None) -> list[str]:
        """GET /v2/<name>/tags/list, following `Link: <...>; rel="next"` pages, with the same auth,
        TLS and backoff as manifests."""
        try:
            return await self._tags(ref, credentials)
        except RegistryError as err:
            raise self._scrubbed(err) from None

    async def image_created(
        self, ref: Reference, digest: str, credentials: Credentials | None, platform: Platform
    ) -> float | None:
        """The `created` time (epoch seconds) in the image config of manifest `digest` (the
        platform's instance when it is an index); None when the config has none."""
        try:
            return await self._created(ref, digest, credentials, platform)
        except RegistryError as err:
            raise self._scrubbed(err) from None

    async def _created(
        self, ref: Reference, digest: str, credentials: Credentials | None, platform: Platform
    ) -> float | None:
        body = await self._get(ref, digest, credentials, None)
        try:
            parsed = mf.parse(body.body, body.media_type)
            if isinstance(parsed, mf.Index):
                instance = mf.choose_instance(parsed, platform)
                body = await self._get(ref, instance.digest, credentials, None)
                parsed = mf.parse(body.body, body.media_type)
        except mf.ManifestError as err:
            raise RegistryProtocolError(f"manifest {digest} in {ref.name}: {err}") from None
        assert isinstance(parsed, mf.ImageManifest)
        config = parsed.config_digest
        if config is None:
            return None
        what = f"image config {config} of {ref.name}"
        path = f"/v2/{ref.repository}/blobs/{config}"
        response = await self._request("GET", ref, "", credentials, what, other_path=path)
        if mf.compute_digest(response.body) != config:
            raise RegistryLies(f"registry lies: {ref.api_host} served other content for {what}")
        return _created_time(response.body)

    async def _tags(self, ref: Reference, credentials: Credentials | None) -> list[str]:
        what = f"the tags of {ref.name}"
        base = f"/v2/{ref.repository}/tags/list"
        path: str | None = f"{base}?n={TAGS_PAGE}"
        tags: list[str] = []
        for _ in range(MAX_TAG_PAGES):
            assert path is not None
            try:
                response = await self._request("GET", ref, "", credentials, what, other_path=path)
            except RegistryError as err:
                if err.status != 404:
                    raise
                raise RegistryError(
                    f"registry {ref.api_host} has no tag list for {ref.name} (HTTP 404); check the image name",
                    status=404,
                ) from None
            try:
                page = json.loads(response.body)
                found = page.get("tags") or []
                if not isinstance(found, list) or not all(isinstance(tag, str) for tag in found):
                    raise ValueError("'tags' is not a list of strings")
            except (ValueError, AttributeError) as err:
                raise RegistryProtocolError(
                    f"registry {ref.api_host} sent a malformed answer for {what}: {err}"
                ) from None
            tags += found
            path = next_page(response.headers.get("Link"))
            if path is None:
                return tags
            if not path.startswith(base + "?"):  # only pages of the same list, on the same host
                raise RegistryProtocolError(
                    f"registry {ref.api_host} sent a next page for {what} outside the tag list; not following it"
                )
        raise RegistryProtocolError(f"registry {ref.api_host} sent more than {MAX_TAG_PAGES} pages of {what}")

    async def _head(self, ref: Reference, reference: str, credentials: Credentials | None) -> ManifestHead:
        what = _what(ref, reference)
        response = await self._request("HEAD", ref, reference, credentials, what)
        digest = response.headers.get("Docker-Content-Digest")
        if digest is not None:
            digest = digest.strip()
            try:
                mf.validate_digest(digest)
            except mf.ManifestError as err:
                raise RegistryProtocolError(
                    f"registry {ref.api_host} sent a malformed digest for {what}: {err}"
                ) from None
        return ManifestHead(digest or None, mf.normalize_media_type(response.headers.get("Content-Type")))

    async def _get(
        self, ref: Reference, reference: str, credentials: Credentials | None, expected_digest: str | None
    ) -> ManifestBody:
        what = _what(ref, reference)
        response = await self._request("GET", ref, reference, credentials, what)
        body = response.body
        announced = expected_digest or _digest_of(reference)
        if announced is None:
            header_digest = response.headers.get("Docker-Content-Digest")
            announced = header_digest.strip() if header_digest else None
        media_type = mf.normalize_media_type(response.headers.get("Content-Type"))
        if announced is None:
            if media_type == mf.DOCKER_V2_SCHEMA1_SIGNED:
                raise RegistryProtocolError(
                    f"{what}: the registry {ref.api_host} serves a signed schema1 manifest without "
                    "Docker-Content-Digest; its digest cannot be computed from the body"
                )
            return ManifestBody(body, media_type, mf.compute_digest(body))
        try:
            algorithm, _ = mf.validate_digest(announced)
            actual = mf.compute_digest(body, algorithm)
        except mf.ManifestError as err:
            raise RegistryProtocolError(f"{what}: {err}") from None
        if actual != announced:
            raise RegistryLies(
                f"registry lies: {ref.api_host} announced digest {announced} for {what} but served "
                f"content with digest {actual}; not trusting it (a caching proxy or a broken registry?)"
            )
        return ManifestBody(body, media_type, announced)

    # -- the request loop ----------------------------------------------------------------

    async def _request(
        self,
        method: str,
        ref: Reference,
        reference: str,
        credentials: Credentials | None,
        what: str,
        other_path: str = "",
    ) -> Response:
        """One manifest (or tag list) request, asked again as the host's backoff says (429, 5xx)."""
        self._secrets.add_credentials(credentials)
        state = self._hosts.get(ref)
        ask = Ask(state, method, ref, reference, credentials, what, other_path)
        backoff = state.backoff
        tries = 0
        while True:
            if backoff.exhausted is not None:
                raise TooManyRequests(f"not asking {ref.domain} for {what}: {backoff.exhausted}", retry_after=None)
            tries += 1
            if backoff.throttled:
                async with state.throttle_lock:  # one request at a time while the host throttles us
                    await self._wait_for(backoff, ref.domain)
                    response = await self._request_once(ask)
            else:
                response = await self._request_once(ask)
            backoff.after_answer(response.status, response.headers)
            if response.status == 429:
                header = response.headers.get("Retry-After")
                decision = backoff.after_429(tries, header, self._clock())
                if not decision.retry:
                    raise _too_many(ask, header, decision.reason)
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
            return check_status(response, ask, self._secrets)

    async def _wait_for(self, backoff: retry.HostBackoff, host: str) -> None:
        delay = backoff.not_before - self._clock()
        if delay > 0:
            observe.waited(host, delay)
            await self._sleep(delay)

    async def _request_once(self, ask: Ask) -> Response:
        """The first request to a host goes alone; the others wait until it learned enough."""
        state = ask.state
        if not state.probed:
            if state.probing is None:
                state.probing = asyncio.Event()
                try:
                    return await self._auth.send(ask)
                finally:
                    state.mark_probed()
            await state.probing.wait()
        return await self._auth.send(ask)


_CREATED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _created_time(body: bytes) -> float | None:
    """An image config's RFC 3339 `created` (Go writes nanoseconds) as epoch seconds."""
    try:
        created = json.loads(body).get("created")
    except (ValueError, AttributeError):
        return None
    match = _CREATED.match(created) if isinstance(created, str) else None
    if match is None:
        return None
    zone = "+00:00" if match[3] == "Z" else match[3]
    fraction = f".{match[2][:6]}" if match[2] else ""
    return datetime.fromisoformat(f"{match[1]}{fraction}{zone}").timestamp()


def _what(ref: Reference, reference: str) -> str:
    return f"manifest {reference} in {ref.name}"


def _digest_of(reference: str) -> str | None:
    """`reference` when it is a digest (sha256:...), else None (a tag)."""
    if ":" not in reference or reference.startswith(":"):
        return None
    try:
        mf.validate_digest(reference)
    except mf.ManifestError:
        return None
    return reference


def _too_many(ask: Ask, header: str | None, reason: str) -> TooManyRequests:
    asked = retry.retry_after(header)
    if asked is not None:
        after = f"retry after {asked:.0f} s; "
    elif header and header.strip():
        after = f"its Retry-After {clip(header.strip(), 40)!r} is not a number of seconds or an HTTP date; "
    else:
        after = ""
    return TooManyRequests(
        f"too many requests to {ask.ref.domain} ({ask.method} {ask.what}): the registry rate-limits us; "
        f"{after}{reason}",
        retry_after=asked,
    )

"""Sending requests to a registry host: the one place httpx, ssl and OS errors become ours.

* Insecure registries (registries.conf or tls_verify=False): HTTPS without verification, then
  plain HTTP, as containers/image does; a first request without credentials asks over both at
  once and keeps HTTPS when it answers.  Never plain HTTP otherwise.
* Redirects followed by hand: `Authorization` is dropped when the origin (scheme, host, port)
  changes, an HTTPS→HTTP redirect is refused unless the registry is insecure, and every
  `Location` is checked (urls.checked_url) before it is used.
* Bodies are read up to a limit (a manifest's, an error answer's, a token answer's).

`map_error` is the error boundary: whatever httpx, ssl or the socket layer raise comes out as a
RegistryError naming the host, the step and what to do.  Texts are scrubbed by the client.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import ssl
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from autoupdated import aio
from autoupdated import manifest as mf
from autoupdated.adapters.registry import observe
from autoupdated.adapters.registry.hosts import Host
from autoupdated.adapters.registry.tlsconfig import TLSSettings
from autoupdated.adapters.registry.urls import BadURL, checked_url, origin
from autoupdated.errors import (
    RegistryConnectionError,
    RegistryError,
    RegistryProtocolError,
    RegistryTimeout,
    RegistryTLSError,
)
from autoupdated.secrets import Secrets

__all__ = ["MAX_ERROR_BODY", "MAX_TOKEN_BODY", "Response", "Transport"]

log = logging.getLogger(__name__)


def spare_httpcore_failed_imports() -> None:
    """httpcore asks for sniffio (asyncio or trio?) on every request and every lock it makes;
    without sniffio installed, each ask is an import that fails after walking sys.path: about
    0.1-0.3 ms, a dozen per registry check (75 ms of CPU in a 20-reference dry run, measured
    under load).  Record its absence once, as importlib does for a module set to None."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # `import sniffio` then fails at once


spare_httpcore_failed_imports()

MAX_REDIRECTS = 5
MAX_ERROR_BODY = 64 * 1024
MAX_TOKEN_BODY = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_INSECURE_HINT = (
    "add the registry's CA certificate as {certs}/{host}/ca.crt, or (if you trust the network) mark it "
    'insecure in registries.conf ([[registry]] location = "{host}", insecure = true) '
    "or run with --tls-verify=false"
)
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
_CLIENT_CERT_REFUSED = (
    "certificate required",
    "certificate_required",
    "bad certificate",
    "bad_certificate",
    "unknown ca",
    "unknown_ca",
)


@dataclass(slots=True)
class Response:
    """A complete answer.  `asked` is the URL first requested (the registry's own origin),
    `url` the one that answered (after redirects)."""

    status: int
    headers: httpx.Headers
    body: bytes
    url: str
    reason: str
    asked: str

    @property
    def from_origin(self) -> bool:
        """True when the answer comes from the host that was asked, not from a redirect target."""
        return origin(self.url) == origin(self.asked)


class _TooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size)
        self.size = size
        self.limit = limit


class _Unreachable(Exception):
    """Internal: this scheme did not get through (the next scheme may); carries the mapped error."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(str(error))
        self.error = error


def _both_failed(https_error: RegistryError, http_error: RegistryError) -> RegistryError:
    """An insecure host that neither scheme reached: the HTTPS error, and the plain HTTP one."""
    if str(http_error) == str(https_error):  # e.g. connection refused: say it once
        return type(https_error)(f"{https_error} (over HTTPS and plain HTTP)")
    return type(https_error)(f"{https_error} (plain HTTP failed too: {http_error})")


class Transport:
    """Sends requests for the registry client over each host's own httpx client."""

    def __init__(self, *, timeout: float, secrets: Secrets) -> None:
        self.timeout = timeout
        self._secrets = secrets

    async def manifest(self, state: Host, method: str, path: str, headers: Mapping[str, str], what: str) -> Response:
        """`method path` on the registry: the known scheme, else https (then http if insecure).
        A scheme recalled from an earlier run that no longer gets through is probed afresh."""
        if state.recalled and state.scheme is not None:
            recalled = state.scheme
            try:
                return await self._manifest_over(state, recalled, method, path, dict(headers), what)
            except _Unreachable as failed:
                log.debug(
                    "registry %s no longer answers over %s as it did (%s); probing its scheme again",
                    state.host,
                    recalled,
                    self._secrets.scrub(str(failed.error)),
                )
                if state.scheme == recalled:
                    state.scheme, state.recalled = None, False
        schemes = [state.scheme] if state.scheme else (["https", "http"] if state.settings.allow_http else ["https"])
        if len(schemes) == 2 and "Authorization" not in headers:
            return await self._race(state, method, path, dict(headers), what)
        https_error: RegistryError | None = None
        for scheme in schemes:
            try:
                response = await self._manifest_over(state, scheme, method, path, dict(headers), what)
            except _Unreachable as failed:
                mapped = failed.error
                if scheme == "https" and "http" in schemes:
                    log.debug(
                        "HTTPS to insecure registry %s failed (%s); trying plain HTTP",
                        state.host,
                        self._secrets.scrub(str(mapped)),
                    )
                    https_error = mapped
                    continue
                if https_error is not None:
                    raise _both_failed(https_error, mapped) from None
                raise mapped from None
            if state.scheme is None:
                state.scheme = scheme
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _race(self, state: Host, method: str, path: str, headers: dict[str, str], what: str) -> Response:
        """An insecure host's scheme is unknown: ask over HTTPS and plain HTTP at once, and keep
        HTTPS when it gets through, as containers/image's try-HTTPS-then-HTTP ends up doing,
        one round trip sooner.  Only requests without credentials race: credentials never go
        over plain HTTP unless HTTPS failed first."""
        over = {
            scheme: asyncio.ensure_future(self._manifest_over(state, scheme, method, path, dict(headers), what))
            for scheme in ("https", "http")
        }
        try:
            try:
                response = await over["https"]
            except _Unreachable as failed:
                https_error = failed.error
                log.debug(
                    "HTTPS to insecure registry %s failed (%s); using plain HTTP",
                    state.host,
                    self._secrets.scrub(str(https_error)),
                )
            else:
                state.scheme = state.scheme or "https"
                return response
            try:
                response = await over["http"]
            except _Unreachable as failed:
                raise _both_failed(https_error, failed.error) from None
            state.scheme = state.scheme or "http"
            return response
        finally:
            for future in over.values():
                future.cancel()  # a no-op once done
                aio.retrieve(future)  # an answer not used is not an error to log

    async def _manifest_over(
        self, state: Host, scheme: str, method: str, path: str, headers: dict[str, str], what: str
    ) -> Response:
        try:
            async with state.semaphore, asyncio.timeout(self.timeout):
                return await self._follow(state, method, f"{scheme}://{state.host}{path}", headers, what)
        except TimeoutError:
            raise RegistryTimeout(
                f"timed out after {self.timeout:g} s talking to {state.host} ({method} {what}); "
                "is the registry reachable?"
            ) from None
        except _TooLarge as err:
            kind = "a manifest" if err.limit == mf.MAX_MANIFEST_SIZE else "an error answer"
            raise RegistryProtocolError(
                f"registry {state.host} sent {err.size}+ bytes for {what}: more than the {err.limit} bytes "
                f"{kind} may have"
            ) from None
        except (httpx.HTTPError, ssl.SSLError, OSError) as err:
            if any(isinstance(cause, httpx.InvalidURL) for cause in _exception_chain(err)):
                # httpx parses a redirect's Location itself, before _redirect_target sees it
                raise _bad_location(state.host, what, "httpx cannot use it") from None
            raise _Unreachable(self.map_error(err, state.settings, state.host, what, method)) from None
        except (httpx.InvalidURL, UnicodeError) as err:
            raise _unsendable(err, state.host, f"{method} {what}") from None

    async def _follow(self, state: Host, method: str, url: str, headers: dict[str, str], what: str) -> Response:
        asked = url
        for _ in range(MAX_REDIRECTS + 1):
            request = state.client.build_request(method, url, headers=headers)
            try:
                response = await state.client.send(request, stream=True)
            except BaseException:
                observe.request(state.host, method, "error")
                raise
            observe.request(state.host, method, response.status_code)
            try:
                log.debug("%s %s -> %d", method, url, response.status_code)
                location = response.headers.get("Location")
                if response.status_code in _REDIRECTS and location:
                    target = self._redirect_target(state, url, location, what)
                    if origin(target) != origin(url):
                        headers.pop("Authorization", None)  # never hand credentials to another host
                    if response.status_code == 303 and method != "HEAD":
                        method = "GET"
                    url = target
                    continue
                limit = mf.MAX_MANIFEST_SIZE if response.status_code == 200 else MAX_ERROR_BODY
                # Read even a HEAD's (empty) body: a response left unread closes its connection
                # instead of returning it to the pool, and every HEAD would pay a new TCP connect.
                body = await _read_body(response, limit)
                return Response(response.status_code, response.headers, body, url, response.reason_phrase, asked)
            finally:
                await response.aclose()
        raise RegistryProtocolError(f"registry {state.host} redirected {what} too many times")

    @staticmethod
    def _redirect_target(state: Host, url: str, location: str, what: str) -> str:
        try:
            target = checked_url(urljoin(url, location))
        except (BadURL, ValueError) as err:
            raise _bad_location(state.host, what, str(err)) from None
        if target.scheme == "http" and url.startswith("https:") and not state.settings.allow_http:
            raise RegistryTLSError(
                f"registry {state.host} redirected {what} from HTTPS to plain HTTP "
                f"({target.netloc}); refusing, since the registry is not marked insecure"
            )
        return target.geturl()

    async def token(
        self,
        state: Host,
        method: str,
        url: str,
        *,
        params: Mapping[str, str],
        data: Mapping[str, str] | None,
        headers: Mapping[str, str],
        what: str,
    ) -> Response:
        """One token request (no redirects), its answer read up to MAX_TOKEN_BODY."""
        netloc = urlsplit(url).netloc
        try:
            async with asyncio.timeout(self.timeout):
                request = state.client.build_request(
                    method, url, params=dict(params) or None, data=dict(data) if data else None, headers=dict(headers)
                )
                try:
                    response = await state.client.send(request, stream=True)
                except BaseException:
                    observe.request(state.host, method, "error")
                    raise
                observe.request(state.host, method, response.status_code)
                try:
                    body = await _read_body(response, MAX_TOKEN_BODY)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise RegistryTimeout(
                f"timed out after {self.timeout:g} s getting a token from {netloc} for {what}"
            ) from None
        except _TooLarge as err:
            raise RegistryProtocolError(
                f"the token service {netloc} sent {err.size}+ bytes for {what}: more than the {err.limit} bytes "
                "a token answer may have; check the token realm the registry announces"
            ) from None
        except (httpx.HTTPError, ssl.SSLError, OSError) as err:
            raise self.map_error(err, state.settings, netloc, what, "token request") from None
        except (httpx.InvalidURL, UnicodeError) as err:
            raise _unsendable(err, netloc, f"token request for {what}") from None
        return Response(response.status_code, response.headers, body, url, response.reason_phrase, url)

    def map_error(self, err: BaseException, settings: TLSSettings, host: str, what: str, action: str) -> RegistryError:
        """The RegistryError for an httpx, ssl or OS error talking to `host`."""
        certs = settings.cert_dir.rsplit("/", 1)[0] if settings.cert_dir else "/etc/containers/certs.d"
        for cause in _exception_chain(err):
            if isinstance(cause, ssl.SSLCertVerificationError):
                code = cause.verify_code
                if code in (62, 63, 64):  # host name, email, IP address mismatch
                    reason = f"certificate is not valid for {host.rsplit(':', 1)[0]}"
                else:
                    reason = _X509_REASONS.get(code) or (cause.verify_message or "certificate verify failed")
                return RegistryTLSError(
                    f"x509: {reason}: TLS verification of {host} failed ({action} {what}); "
                    + _INSECURE_HINT.format(certs=certs, host=host)
                )
            if isinstance(cause, ssl.SSLError):
                return _tls_error(cause, host, f"{action} {what}", certs)
            if isinstance(cause, ConnectionRefusedError):
                return RegistryConnectionError(
                    f"connection refused by {host} ({action} {what}); is the registry running and reachable?"
                )
        if isinstance(err, httpx.TimeoutException):
            return RegistryTimeout(
                f"timed out after {self.timeout:g} s talking to {host} ({action} {what}); is the registry reachable?"
            )
        detail = str(err) or type(err).__name__
        if isinstance(err, httpx.ConnectError):
            return RegistryConnectionError(f"cannot connect to {host} ({action} {what}): {detail}")
        return RegistryConnectionError(f"talking to {host} failed ({action} {what}): {type(err).__name__}: {detail}")


def _bad_location(host: str, what: str, reason: str) -> RegistryProtocolError:
    return RegistryProtocolError(
        f"registry {host} redirected {what} to an unusable Location ({reason}); "
        "the registry or a proxy in front of it is misconfigured"
    )


def _unsendable(err: Exception, host: str, doing: str) -> RegistryProtocolError:
    """httpx refused to build the request: something the registry sent made it unusable."""
    return RegistryProtocolError(
        f"cannot send the request to {host} ({doing}): {type(err).__name__}: {err}; "
        "the registry sent a URL or value that cannot be used"
    )


def _tls_error(cause: ssl.SSLError, host: str, doing: str, certs: str) -> RegistryTLSError:
    reason = getattr(cause, "reason", None) or str(cause)
    text = f"{reason} {cause}".lower()
    if "wrong_version_number" in text or "wrong version number" in text:
        return RegistryTLSError(
            f"TLS handshake with {host} failed ({doing}): the server does not speak TLS; "
            "if it is a plain-HTTP registry, mark it insecure in registries.conf"
        )
    if any(s in text for s in _CLIENT_CERT_REFUSED):
        return RegistryTLSError(
            f"TLS handshake with {host} failed ({doing}): the registry refused our client "
            f"certificate or wants one ({reason}); put a client certificate the registry trusts in "
            f"{certs}/{host}/ as client.cert and client.key"
        )
    return RegistryTLSError(f"TLS handshake with {host} failed ({doing}): {reason}")


def _exception_chain(err: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


async def _read_body(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise _TooLarge(total, limit)
        chunks.append(chunk)
    return b"".join(chunks)

"""Part 2 of the engine: is there a newer image?  (podman's `HasDifferentDigest`, cheaper.)

`DigestComparer` (the `registry` policy) asks the registry with a HEAD first and reads the
`Docker-Content-Digest`; when that digest is one of the local image's digests, nothing else
is sent.  It GETs the manifest only when the header is missing (then the exact body bytes are
hashed) or when the tag names an index/manifest list that matches no local digest: then the
instance a pull would pick for the platform (containers/image rules) is compared. As podman's
`HasDifferentDigest`, that platform is the local image's own os/architecture/variant, not the
host's: the caller passes a `PlatformSource`, asked only when the remote is an index (or a fixed
`Platform` the operator configured).

Per run, every distinct question is asked once: concurrent callers for the same
(reference, credentials, platform, local digests) share one in-flight check, HEAD results are
shared per (reference, credentials) and manifest bodies per (repository, digest, credentials),
failures included (a registry that failed once in a run is not hammered again).

`local_update_available` is the `local` policy (podman 5: compare the container image's
digest with the digest of the image its name now points to).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from autoupdated import aio
from autoupdated import manifest as mf
from autoupdated.errors import RegistryError, RegistryProtocolError, RegistryServerError
from autoupdated.manifest import ManifestBody, ManifestHead
from autoupdated.model import CheckResult, Credentials, ImageInfo, Platform, PlatformSource
from autoupdated.reference import Reference

__all__ = ["CheckResult", "DigestComparer", "local_update_available"]

log = logging.getLogger(__name__)

T = TypeVar("T")
T_key = TypeVar("T_key")


@dataclass(frozen=True, slots=True)
class _Head:
    digest: str
    media_type: str | None
    body: ManifestBody | None  # set when the body had to be fetched to learn the digest


def local_update_available(current: ImageInfo, named: ImageInfo | None) -> bool:
    """The `local` policy: True when the image the container's name now resolves to locally
    differs from the container's image (podman 5 compares the digests)."""
    if named is None:
        return False
    if named.id == current.id:
        return False
    return named.digest != current.digest or not named.digest


class RegistryPort(Protocol):
    """What the comparer asks of a registry (adapters/registry/client.py in production)."""

    async def head_manifest(self, ref: Reference, reference: str, credentials: Credentials | None) -> ManifestHead: ...

    async def get_manifest(
        self, ref: Reference, reference: str, credentials: Credentials | None, *, expected_digest: str | None = None
    ) -> ManifestBody: ...

    def scrub(self, text: str) -> str:
        """`text` without any secret the registry client has seen."""
        ...


class DigestComparer:
    """Compares local digests with the registry's, once per distinct question per run."""

    def __init__(self, client: RegistryPort) -> None:
        self.client = client
        # Platform None: the local image's own, which its digests identify.
        self._checks: dict[tuple[str, Credentials | None, Platform | None, frozenset[str]], asyncio.Future[CheckResult]]
        self._checks = {}
        self._heads: dict[tuple[str, str, Credentials | None], asyncio.Future[_Head]] = {}
        self._bodies: dict[tuple[str, str, Credentials | None], asyncio.Future[ManifestBody]] = {}

    async def check(
        self,
        ref: Reference,
        *,
        credentials: Credentials | None,
        platform: Platform | PlatformSource,
        local_digests: frozenset[str],
    ) -> CheckResult:
        """Is a newer image available for `ref` than any of `local_digests`?

        `platform` picks the instance of an index; a `PlatformSource` is awaited only then.
        Raises RegistryError (with a message for users) when the registry cannot tell.
        """
        fixed = platform if isinstance(platform, Platform) else None
        key = (str(ref), credentials, fixed, frozenset(local_digests))
        return await self._shared(
            self._checks, key, lambda: self._check(ref, credentials, platform, frozenset(local_digests))
        )

    def prefetch(self, ref: Reference, credentials: Credentials | None) -> None:
        """Ask the registry for `ref`'s tag now, before the local digests are known; the
        `check` of any container on it then shares the answer (or the error).  The engine calls
        this while podman is still listing the local images, so the two waits overlap."""
        if ref.digest is None and ref.tag is not None:
            self._head_future(ref, ref.tag, credentials)

    async def _shared(self, cache: dict[T_key, asyncio.Future[T]], key: T_key, make: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.shield(aio.shared(cache, key, lambda: self._guarded(make)))

    async def _guarded(self, make: Callable[[], Awaitable[T]]) -> T:
        try:
            return await make()
        except RegistryError:
            raise
        except mf.ManifestError as err:
            raise RegistryProtocolError(str(err)) from None
        except Exception as err:
            text = self.client.scrub(f"{type(err).__name__}: {err}")
            log.debug("unexpected error while checking a registry: %s", text)
            raise RegistryError(f"unexpected error while asking the registry: {text}") from None

    async def _check(
        self,
        ref: Reference,
        credentials: Credentials | None,
        platform: Platform | PlatformSource,
        local_digests: frozenset[str],
    ) -> CheckResult:
        if ref.digest is not None:
            # Digest-pinned (the engine normally skips these): the pinned content cannot change.
            if ref.digest in local_digests:
                return CheckResult(False, ref.digest)
            return await self._resolve(ref, ref.digest, None, credentials, platform, local_digests)
        if ref.tag is None:
            raise RegistryError(f"{ref}: auto updates need a tag or a digest to compare")
        head = await self._head(ref, credentials)
        if head.digest in local_digests:
            log.debug("%s: registry digest %s matches the local image", ref, head.digest)
            return CheckResult(False, head.digest)
        if head.media_type in mf.IMAGE_TYPES:
            return CheckResult(True, head.digest)
        return await self._resolve(ref, head.digest, head.body, credentials, platform, local_digests)

    async def _resolve(
        self,
        ref: Reference,
        digest: str,
        body: ManifestBody | None,
        credentials: Credentials | None,
        platform: Platform | PlatformSource,
        local_digests: frozenset[str],
    ) -> CheckResult:
        """The tag (or pin) names `digest`, which no local digest matches: if it is an index,
        compare the instance a pull for `platform` would get."""
        if body is None:
            body = await self._body(ref, digest, credentials)
        try:
            parsed = mf.parse(body.body, body.media_type)
        except mf.ManifestError as err:
            raise RegistryProtocolError(f"reading {ref}: {err}") from None
        if isinstance(parsed, mf.ImageManifest):
            return CheckResult(True, digest)
        if not isinstance(platform, Platform):
            platform = await platform()
        try:
            instance = mf.choose_instance(parsed, platform)
        except mf.ManifestError as err:
            raise RegistryError(f"{ref}: {err}") from None
        update = instance.digest not in local_digests
        log.debug(
            "%s: %s instance for %s is %s (update: %s)", ref, parsed.media_type, platform, instance.digest, update
        )
        return CheckResult(update, instance.digest)

    async def _head(self, ref: Reference, credentials: Credentials | None) -> _Head:
        assert ref.tag is not None
        return await asyncio.shield(self._head_future(ref, ref.tag, credentials))

    def _head_future(self, ref: Reference, tag: str, credentials: Credentials | None) -> asyncio.Future[_Head]:
        """The HEAD of `tag`, shared per (repository, tag, credentials) for the run."""
        key = (ref.name, tag, credentials)
        return aio.shared(self._heads, key, lambda: self._guarded(lambda: self._fetch_head(ref, tag, credentials)))

    async def _fetch_head(self, ref: Reference, tag: str, credentials: Credentials | None) -> _Head:
        try:
            head = await self.client.head_manifest(ref, tag, credentials)
        except RegistryServerError as err:
            if err.status not in (405, 501):
                raise
            # a registry without HEAD support: GET, and hash the body
            log.debug("%s: registry does not support HEAD (HTTP %s); using GET", ref, err.status)
            head = ManifestHead(None, None)
        if head.digest is not None:
            return _Head(head.digest, head.media_type, None)
        # No Docker-Content-Digest: the digest is the hash of the exact bytes served.
        log.debug("%s: HEAD gave no Docker-Content-Digest; fetching the manifest to hash it", ref)
        body = await self.client.get_manifest(ref, tag, credentials)
        self._bodies.setdefault((ref.name, body.digest, credentials), _done(body))
        return _Head(body.digest, body.media_type, body)

    async def _body(self, ref: Reference, digest: str, credentials: Credentials | None) -> ManifestBody:
        return await self._shared(
            self._bodies,
            (ref.name, digest, credentials),
            lambda: self.client.get_manifest(ref, digest, credentials, expected_digest=digest),
        )


def _done(value: T) -> asyncio.Future[T]:
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future

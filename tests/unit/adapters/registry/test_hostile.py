"""Hostile or broken registry answers come out as RegistryErrors that name the registry.

Each answer below used to escape as a foreign exception (ValueError, httpx.InvalidURL,
UnicodeEncodeError, an internal size error), which DigestComparer reported as "unexpected
error".  Each is asked through RegistryClient and through DigestComparer.check.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from autoupdated import manifest as mf
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.errors import (
    AuthenticationRequired,
    ManifestUnknown,
    RegistryError,
    RegistryProtocolError,
    TooManyRequests,
)
from autoupdated.model import Credentials, Platform
from autoupdated.parts.digest import DigestComparer
from autoupdated.reference import parse
from tests.harness.registry import FAKE_REALM, FakeRegistry

MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "config": {"digest": "sha256:" + "a" * 64}, "layers": []}
).encode()
REF = parse("registry.test/team/app:1.0")
PATH = "/v2/team/app/manifests/1.0"
Handler = Callable[[httpx.Request], httpx.Response]


def tls_config(tmp_path: Path) -> TLSConfig:
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    return TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[])


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
def fake() -> FakeRegistry:
    registry = FakeRegistry()
    registry.put("team/app", "1.0", MANIFEST, mf.OCI_MANIFEST)
    return registry


async def both_fail(
    fake: FakeRegistry, tmp_path: Path, kind: type[RegistryError], credentials: Credentials | None = None
) -> list[str]:
    """The texts of the errors a HEAD through the client, and a check through the comparer, raise."""
    texts = []
    async with RegistryClient(tls=tls_config(tmp_path), transport=fake.transport(), sleep=no_wait) as client:
        with pytest.raises(kind) as info:
            await client.head_manifest(REF, "1.0", credentials)
        texts.append(str(info.value))
    async with RegistryClient(tls=tls_config(tmp_path), transport=fake.transport(), sleep=no_wait) as client:
        with pytest.raises(kind) as info:
            await DigestComparer(client).check(
                REF, credentials=credentials, platform=Platform(), local_digests=frozenset()
            )
        texts.append(str(info.value))
    for text in texts:
        assert "unexpected error" not in text and "ExceptionGroup" not in text
        assert "registry.test" in text or "auth.test" in text, text
    return texts


def challenge(realm: str) -> Handler:
    value = f'Bearer realm="{realm}",service="s"'.encode()  # bytes: the mock refuses non-ASCII text
    return lambda r: httpx.Response(401, headers=[(b"WWW-Authenticate", value)])


async def test_retry_after_with_a_superscript_digit_is_a_too_many_requests_error(
    fake: FakeRegistry, tmp_path: Path
) -> None:
    fake.override[("*", PATH)] = lambda r: httpx.Response(429, headers=[(b"Retry-After", "²".encode())])
    for text in await both_fail(fake, tmp_path, TooManyRequests):
        assert "Retry-After '²' is not a number of seconds" in text


@pytest.mark.parametrize(
    "realm",
    [
        pytest.param("https://[::1/token", id="bad-ipv6-literal"),
        pytest.param("https://auth.test:99999/token", id="port-99999"),
        pytest.param("https://auth.test/tok\x7fen", id="control-character"),
        pytest.param("https://auth.tëst/token", id="non-ascii"),
        pytest.param("ftp://auth.test/token", id="not-http"),
    ],
)
async def test_unusable_token_realm_is_a_protocol_error(fake: FakeRegistry, tmp_path: Path, realm: str) -> None:
    fake.override[("*", PATH)] = challenge(realm)
    for text in await both_fail(fake, tmp_path, RegistryProtocolError, Credentials("u", "secret-pw")):
        assert "registry registry.test gave an unusable token realm for manifest 1.0" in text
    assert fake.token_calls == []


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("https://cdn.test:99999/blob", id="port-99999"),
        pytest.param("https://[::1/blob", id="bad-ipv6-literal"),
        pytest.param("https://cdn.test/bl\x7fob", id="control-character"),
    ],
)
async def test_unusable_redirect_location_is_a_protocol_error(
    fake: FakeRegistry, tmp_path: Path, location: str
) -> None:
    fake.override[("*", PATH)] = lambda r: httpx.Response(307, headers={"Location": location})
    for text in await both_fail(fake, tmp_path, RegistryProtocolError):
        assert "registry registry.test redirected manifest 1.0" in text and "unusable Location" in text
    assert all(c.host == "registry.test" for c in fake.calls)


async def test_non_ascii_token_is_a_protocol_error(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.auth = "bearer"
    fake.token_prefix = "tök"
    for text in await both_fail(fake, tmp_path, RegistryProtocolError):
        assert "token service of registry.test (auth.test) sent a token with non-ASCII" in text


async def test_token_answer_over_1_mib_is_a_protocol_error(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.override[("*", PATH)] = challenge(FAKE_REALM)
    huge = json.dumps({"token": "x" * (1024 * 1024 + 10)}).encode()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            return httpx.Response(200, content=huge)
        return await fake.handle(request)

    for _ in range(2):
        async with RegistryClient(tls=tls_config(tmp_path), transport=httpx.MockTransport(handle)) as client:
            with pytest.raises(RegistryProtocolError) as info:
                if _ == 0:
                    await client.head_manifest(REF, "1.0", None)
                else:
                    await DigestComparer(client).check(
                        REF, credentials=None, platform=Platform(), local_digests=frozenset()
                    )
        text = str(info.value)
        assert "the token service auth.test sent" in text and "more than the 1048576 bytes" in text
        assert "unexpected error" not in text


# -- scrub first, then cut ------------------------------------------------------------------------

ALICE = Credentials("alice", "correct-horse-battery-staple")
ALICE_B64 = base64.b64encode(b"alice:correct-horse-battery-staple").decode()


def echo(status: int, secret: str, prefix: str = "X: ") -> Handler:
    """An error body whose detail (`CODE: message`) has `secret` across the 300-character cut."""
    padding = "e" * (300 - len(prefix) - len(secret) // 2)
    doc = {"errors": [{"code": "X", "message": padding + secret + " and more text after it"}]}
    return lambda r: httpx.Response(status, json=doc)


@pytest.mark.parametrize("secret", [ALICE_B64, ALICE.password], ids=["base64-user-password", "password"])
async def test_an_echoed_secret_across_the_cut_is_scrubbed_not_cut(
    fake: FakeRegistry, tmp_path: Path, secret: str
) -> None:
    fake.override[("GET", PATH)] = echo(404, secret)
    async with RegistryClient(tls=tls_config(tmp_path), transport=fake.transport()) as client:
        with pytest.raises(ManifestUnknown) as info:
            await client.get_manifest(REF, "1.0", ALICE)
    text = str(info.value) + repr(info.value)
    assert "<redacted>" in text
    assert secret[:8] not in text and secret[-8:] not in text


async def test_a_token_service_echoing_a_secret_across_the_cut_is_scrubbed(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.override[("*", PATH)] = challenge(FAKE_REALM)
    answer = echo(401, ALICE_B64)

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.test":
            return answer(request)
        return await fake.handle(request)

    async with RegistryClient(tls=tls_config(tmp_path), transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(AuthenticationRequired) as info:
            await client.get_manifest(REF, "1.0", ALICE)
    text = str(info.value)
    assert "<redacted>" in text and ALICE_B64[:8] not in text

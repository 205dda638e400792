"""`RegistryClient.list_tags` against the in-process FakeRegistry: pages, auth, 429s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.errors import RegistryError, RegistryProtocolError
from autoupdated.model import Credentials
from autoupdated.reference import parse
from tests.harness.registry import FakeRegistry
from tests.unit.adapters.registry.test_backoff import Clock, too_many

TAGS = [f"1.{i}.0" for i in range(250)]
REF = parse("registry.test/team/app:1.26.0")
LIST = "/v2/team/app/tags/list"


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def client_for(fake: FakeRegistry, clock: Clock, tmp_path: Path) -> RegistryClient:
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    tls = TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[])
    return RegistryClient(tls=tls, transport=fake.transport(), clock=clock, sleep=clock.sleep)


@pytest.fixture
async def fake_and_client(clock: Clock, tmp_path: Path) -> AsyncIterator[tuple[FakeRegistry, RegistryClient]]:
    fake = FakeRegistry(auth="bearer")
    fake.tag_lists["team/app"] = list(TAGS)
    client = await client_for(fake, clock, tmp_path)
    try:
        yield fake, client
    finally:
        await client.aclose()


async def test_all_pages_of_250_tags_are_listed_with_a_bearer_token(fake_and_client) -> None:
    fake, client = fake_and_client
    tags = await client.list_tags(REF, Credentials("user", "fake-Pa55word-secret"))
    assert sorted(tags) == sorted(TAGS)
    pages = [c for c in fake.calls if c.method == "GET" and c.path == LIST and c.authorization]
    assert len(pages) == 3, "100 + 100 + 50"
    assert len(fake.token_calls) == 1


async def test_a_429_is_waited_out_as_retry_after_says(fake_and_client, clock: Clock) -> None:
    fake, client = fake_and_client
    limits = [too_many("7"), too_many("7")]

    def limited(request: httpx.Request) -> httpx.Response:
        return limits.pop(0)() if limits else fake._tags(request, "team/app")

    fake.override[("GET", LIST)] = limited
    tags = await client.list_tags(REF, Credentials("user", "fake-Pa55word-secret"))
    assert sorted(tags) == sorted(TAGS)
    assert clock.sleeps[:2] == [7.0, 7.0]


async def test_a_registry_that_keeps_rate_limiting_gives_a_clear_error(fake_and_client) -> None:
    fake, client = fake_and_client
    fake.override[("GET", LIST)] = lambda request: httpx.Response(429, headers={"Retry-After": "3600"})
    with pytest.raises(RegistryError, match=r"too many requests to registry\.test"):
        await client.list_tags(REF, None)


async def test_a_next_page_outside_the_tag_list_is_not_followed(fake_and_client) -> None:
    fake, client = fake_and_client
    fake.override[("GET", LIST)] = lambda request: httpx.Response(
        200, json={"tags": ["1.0.0"]}, headers={"Link": '<https://evil.test/steal>; rel="next"'}
    )
    with pytest.raises(RegistryProtocolError, match="outside the tag list"):
        await client.list_tags(REF, None)


async def test_an_unknown_repository_says_so(fake_and_client) -> None:
    _, client = fake_and_client
    with pytest.raises(RegistryError, match=r"has no tag list for registry\.test/team/other"):
        await client.list_tags(parse("registry.test/team/other:1"), Credentials("user", "fake-Pa55word-secret"))


def test_created_times_as_go_writes_them() -> None:
    from autoupdated.adapters.registry.client import _created_time

    assert _created_time(b'{"created": "2026-12-01T12:00:00.123456789Z"}') == 1796126400.123456
    assert _created_time(b'{"created": "2026-12-01T13:00:00+01:00"}') == 1796126400.0
    assert _created_time(b"{}") is None and _created_time(b"junk") is None

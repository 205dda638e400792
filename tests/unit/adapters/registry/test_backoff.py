"""Registry backoff (autoupdated/retry.py in the RegistryClient) against the in-process FakeRegistry.

429 with Retry-After, RateLimit-Remaining and 5xx, each counted request by request; the same
faults with a real registry, podman and systemd are in tests/machine/test_faults.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from autoupdated import manifest as mf
from autoupdated.adapters.registry import retry
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.errors import RegistryServerError, TooManyRequests
from autoupdated.model import Platform
from autoupdated.parts.digest import DigestComparer
from autoupdated.reference import parse
from tests.harness.registry import FakeRegistry

MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "config": {"digest": "sha256:" + "a" * 64}, "layers": []}
).encode()
REPOS = [f"team/app{i}" for i in range(8)]


class Clock:
    """A fake monotonic clock that `sleep` advances: backoff tests take no wall time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake() -> FakeRegistry:
    registry = FakeRegistry()
    for repo in REPOS:
        registry.put(repo, "1.0", MANIFEST, mf.OCI_MANIFEST)
    return registry


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(fake: FakeRegistry, clock: Clock, tmp_path: Path) -> AsyncIterator[RegistryClient]:
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    tls = TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[])
    async with RegistryClient(tls=tls, transport=fake.transport(), clock=clock, sleep=clock.sleep) as c:
        yield c


def answers(*responses: Callable[[], httpx.Response]) -> Callable[[httpx.Request], httpx.Response]:
    """An override that gives these answers in turn, then the last one forever."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return (queue.pop(0) if len(queue) > 1 else queue[0])()

    return handler


def passthrough(fake: FakeRegistry, path: str) -> Callable[[], httpx.Response]:
    """The answer the fake would give to a HEAD of `path` without the override."""
    repo, tag = path.removeprefix("/v2/").split("/manifests/")
    body, media_type = fake.manifests[(repo, tag)]
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    return lambda: httpx.Response(200, headers={"Docker-Content-Digest": digest, "Content-Type": media_type})


def too_many(retry_after: str | None = None, **headers: str) -> Callable[[], httpx.Response]:
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return lambda: httpx.Response(429, headers=headers)


def head(client: RegistryClient, repo: str = REPOS[0], host: str = "registry.test") -> object:
    return client.head_manifest(parse(f"{host}/{repo}:1.0"), "1.0", None)


PATH = f"/v2/{REPOS[0]}/manifests/1.0"


# -- the pure parts -------------------------------------------------------------------------------


def test_retry_after_forms() -> None:
    assert retry.retry_after("7") == 7.0
    assert retry.retry_after(" 0 ") == 0.0
    moment = time.time() + 30
    assert 28 <= (retry.retry_after(email.utils.formatdate(moment, usegmt=True)) or 0) <= 31
    assert retry.retry_after(email.utils.formatdate(time.time() - 300, usegmt=True)) == 0.0
    for junk in (None, "", "soon", "-5", "1.5e3", "Wed, 99 Foo 2015"):
        assert retry.retry_after(junk) is None, junk


def test_rate_limit_remaining_forms() -> None:
    assert retry.rate_limit_remaining(httpx.Headers({"ratelimit-remaining": "0;w=21600"})) == 0
    assert retry.rate_limit_remaining(httpx.Headers({"RateLimit-Remaining": "97"})) == 97
    assert retry.rate_limit_remaining(httpx.Headers({"RateLimit": "limit=100, remaining=0, reset=50"})) == 0
    assert retry.rate_limit_remaining(httpx.Headers({"RateLimit-Remaining": "lots"})) is None
    assert retry.rate_limit_remaining(httpx.Headers({})) is None


# -- 429 ----------------------------------------------------------------------------------------


async def test_429_waits_what_retry_after_says_then_succeeds(
    fake: FakeRegistry, client: RegistryClient, clock: Clock
) -> None:
    fake.override[("HEAD", PATH)] = answers(too_many("7"), passthrough(fake, PATH))
    result = await head(client)
    assert getattr(result, "digest", None)
    assert fake.count("HEAD") == 2 and clock.sleeps == [7.0]


async def test_429_with_an_http_date(fake: FakeRegistry, client: RegistryClient, clock: Clock) -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    fake.override[("HEAD", PATH)] = answers(too_many(when), passthrough(fake, PATH))
    await head(client)
    assert fake.count("HEAD") == 2 and len(clock.sleeps) == 1 and 17 <= clock.sleeps[0] <= 21


async def test_429_without_retry_after_backs_off_exponentially_and_gives_up(
    fake: FakeRegistry, client: RegistryClient, clock: Clock
) -> None:
    fake.override[("HEAD", PATH)] = answers(too_many())
    with pytest.raises(TooManyRequests) as caught:
        await head(client)
    assert fake.count("HEAD") == retry.MAX_TRIES == 3 and clock.sleeps == [1.0, 2.0]
    text = str(caught.value)
    assert text.startswith(f"too many requests to registry.test (HEAD manifest 1.0 in registry.test/{REPOS[0]})")
    assert "after 3 tries" in text and "the next run tries again" in text
    # The host is not asked again in this run: another repository fails without a request.
    with pytest.raises(TooManyRequests, match=r"not asking registry\.test for manifest 1\.0 in .*app1"):
        await head(client, REPOS[1])
    assert fake.count("HEAD") == 3


async def test_429_asking_for_too_long_is_not_waited_for(
    fake: FakeRegistry, client: RegistryClient, clock: Clock
) -> None:
    fake.override[("HEAD", PATH)] = answers(too_many("3600"))
    with pytest.raises(TooManyRequests) as caught:
        await head(client)
    assert fake.count("HEAD") == 1 and clock.sleeps == []
    assert "retry after 3600 s" in str(caught.value) and "more than the 60 s" in str(caught.value)
    assert caught.value.retry_after == 3600


async def test_429_for_many_containers_never_turns_into_a_burst(
    fake: FakeRegistry, client: RegistryClient, clock: Clock
) -> None:
    """8 repositories at once on one throttling host: after the first 429 they go one by one."""
    limited = {"left": 3}  # the registry refuses the first 3 requests it sees

    def handler(request: httpx.Request) -> httpx.Response:
        if limited["left"] > 0:
            limited["left"] -= 1
            return httpx.Response(429, headers={"Retry-After": "2"})
        repo = request.url.path.removeprefix("/v2/").split("/manifests/")[0]
        body, media_type = fake.manifests[(repo, "1.0")]
        digest = fake.put(repo, "1.0", body, media_type)
        return httpx.Response(200, headers={"Docker-Content-Digest": digest, "Content-Type": media_type})

    for repo in REPOS:
        fake.override[("HEAD", f"/v2/{repo}/manifests/1.0")] = handler
    fake.delay = 0.01
    results = await asyncio.gather(*(head(client, repo) for repo in REPOS), return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results), results
    assert fake.count("HEAD") == len(REPOS) + 3, "each refused request was asked again exactly once"
    assert set(clock.sleeps) <= {2.0}


async def test_429_backoff_takes_real_time(fake: FakeRegistry, tmp_path: Path) -> None:
    """With the real clock: the retry goes out no sooner than Retry-After says."""
    sent: list[float] = []
    ok = passthrough(fake, PATH)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return too_many("1")() if len(sent) == 1 else ok()

    fake.override[("HEAD", PATH)] = handler
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    tls = TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[])
    async with RegistryClient(tls=tls, transport=fake.transport()) as client:
        await head(client)
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.95


# -- RateLimit-Remaining -------------------------------------------------------------------------


async def test_rate_limit_remaining_zero_stops_asking_that_registry(
    fake: FakeRegistry, client: RegistryClient, clock: Clock
) -> None:
    digest = fake.put(REPOS[0], "1.0", MANIFEST, mf.OCI_MANIFEST)
    fake.override[("HEAD", PATH)] = lambda r: httpx.Response(
        200,
        headers={
            "Docker-Content-Digest": digest,
            "Content-Type": mf.OCI_MANIFEST,
            "RateLimit-Remaining": "0;w=21600",
            "RateLimit-Reset": "3600",
        },
    )
    assert getattr(await head(client), "digest", None) == digest, "the answer that said 0 is still used"
    with pytest.raises(TooManyRequests) as caught:
        await head(client, REPOS[1])
    assert "rate limit is used up (RateLimit-Remaining: 0) (it resets in 3600 s)" in str(caught.value)
    assert "registry.test" in str(caught.value)
    assert fake.count("HEAD") == 1 and clock.sleeps == []
    # Another registry in the same run is asked as usual.
    await head(client, REPOS[1], host="other.test")
    assert fake.count("HEAD") == 2


async def test_digest_comparer_with_a_used_up_rate_limit_fails_each_reference_clearly(
    fake: FakeRegistry, client: RegistryClient
) -> None:
    fake.override[("*", PATH)] = lambda r: httpx.Response(429, headers={"RateLimit-Remaining": "0"})
    comparer = DigestComparer(client)
    platform = Platform("linux", "amd64")
    outcomes = await asyncio.gather(
        *(
            comparer.check(
                parse(f"registry.test/{repo}:1.0"), credentials=None, platform=platform, local_digests=frozenset()
            )
            for repo in REPOS
        ),
        return_exceptions=True,
    )
    assert all(isinstance(o, TooManyRequests) for o in outcomes)
    assert fake.count("HEAD") == 1, "one request found the limit used up; no other was sent"
    assert all(f"registry.test/{repo}" in str(o) for repo, o in zip(REPOS, outcomes, strict=True))


# -- 5xx ----------------------------------------------------------------------------------------


async def test_5xx_once_is_retried_once_with_jitter(fake: FakeRegistry, client: RegistryClient, clock: Clock) -> None:
    fake.override[("HEAD", PATH)] = answers(lambda: httpx.Response(503), passthrough(fake, PATH))
    await head(client)
    assert fake.count("HEAD") == 2
    assert len(clock.sleeps) == 1 and retry.SERVER_DELAY[0] <= clock.sleeps[0] <= retry.SERVER_DELAY[1]


async def test_5xx_twice_is_reported_after_exactly_two_requests(
    fake: FakeRegistry, client: RegistryClient, clock: Clock
) -> None:
    body = {"errors": [{"code": "UNAVAILABLE", "message": "maintenance"}]}
    fake.override[("HEAD", PATH)] = lambda r: httpx.Response(502, json=body)
    with pytest.raises(RegistryServerError) as caught:
        await head(client)
    assert fake.count("HEAD") == 2 and len(clock.sleeps) == 1
    assert "HTTP 502" in str(caught.value) and "try again later" in str(caught.value)
    assert f"registry.test/{REPOS[0]}" in str(caught.value)


async def test_501_is_not_retried(fake: FakeRegistry, client: RegistryClient, clock: Clock) -> None:
    fake.override[("GET", PATH)] = lambda r: httpx.Response(501)
    with pytest.raises(RegistryServerError):
        await client.get_manifest(parse(f"registry.test/{REPOS[0]}:1.0"), "1.0", None)
    assert fake.count("GET") == 1 and clock.sleeps == []


def test_jitter_stays_in_bounds() -> None:
    backoff = retry.HostBackoff("h")
    waits = [backoff.after_server_error(1, 500).wait for _ in range(200)]
    assert min(waits) >= retry.SERVER_DELAY[0] and max(waits) <= retry.SERVER_DELAY[1] and len(set(waits)) > 100
    assert not backoff.after_server_error(2, 500).retry

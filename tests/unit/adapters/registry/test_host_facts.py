"""HostFacts: what a long-lived process's runs learned of each registry (scheme, challenge).

The daemon's next run asks every registry at once, authenticated up front, instead of an
HTTPS attempt and a 401 first; a registry that changed heals the facts within the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from autoupdated import manifest as mf
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.hosts import HostFacts
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.model import Credentials
from autoupdated.reference import parse
from tests.harness import oci
from tests.harness.registry import FakeRegistry, Registry
from tests.harness.registry_fixtures import AUTH_PASSWORD, AUTH_USER

MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "config": {"digest": "sha256:" + "b" * 64}, "layers": []}
).encode()
DIGEST = mf.compute_digest(MANIFEST)
REF = parse("registry.test/team/app:1.0")
INSECURE = '[[registry]]\nlocation = "registry.test"\ninsecure = true\n'


def tls(tmp_path: Path, conf: str = INSECURE) -> TLSConfig:
    path = tmp_path / "registries.conf"
    path.write_text(conf)
    return TLSConfig(registries_conf=path, registries_conf_dirs=[], certs_dirs=[])


class Wire:
    """The fake registry behind a switch: which schemes get through, and every attempt seen."""

    def __init__(self, fake: FakeRegistry) -> None:
        self.fake = fake
        self.refuse: set[str] = {"https"}  # a plain-HTTP registry
        self.attempts: list[tuple[str, str]] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "registry.test":
            self.attempts.append((request.url.scheme, request.method))
            if request.url.scheme in self.refuse:
                raise httpx.ConnectError(f"{request.url.scheme} refused", request=request)
        return await self.fake.handle(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


async def one_run(wire: Wire, tmp_path: Path, facts: HostFacts | None, creds: Credentials | None = None) -> str:
    async with RegistryClient(tls=tls(tmp_path), transport=wire.transport(), facts=facts) as client:
        return (await client.head_manifest(REF, "1.0", creds)).digest


@pytest.fixture
def wire() -> Wire:
    fake = FakeRegistry(auth="bearer")
    fake.put("team/app", "1.0", MANIFEST, mf.OCI_MANIFEST)
    return Wire(fake)


async def test_the_next_run_asks_over_the_known_scheme_with_its_token_up_front(wire: Wire, tmp_path: Path) -> None:
    facts = HostFacts()
    assert await one_run(wire, tmp_path, facts) == DIGEST
    assert wire.attempts == [("https", "HEAD"), ("http", "HEAD"), ("http", "HEAD")]  # TLS fails, 401, token
    assert [c.authorization is not None for c in wire.fake.calls] == [False, True]
    assert len(facts) == 1

    wire.attempts.clear()
    wire.fake.calls.clear()
    assert await one_run(wire, tmp_path, facts) == DIGEST
    assert wire.attempts == [("http", "HEAD")]  # no HTTPS attempt, no 401: the token went first
    assert [c.authorization is not None for c in wire.fake.calls] == [True]
    assert len(wire.fake.token_calls) == 1  # the first run's token, still valid, went up front


async def test_a_kept_token_is_used_until_it_expires_then_fetched_afresh(wire: Wire, tmp_path: Path) -> None:
    now = [1000.0]
    facts = HostFacts()

    async def run() -> str:
        async with RegistryClient(
            tls=tls(tmp_path), transport=wire.transport(), facts=facts, clock=lambda: now[0], token_margin=10
        ) as client:
            return (await client.head_manifest(REF, "1.0", None)).digest

    assert await run() == DIGEST
    now[0] += 200  # within the token's 300 s (less the 10 s margin)
    assert await run() == DIGEST
    assert len(wire.fake.token_calls) == 1
    now[0] += 95  # 295 s: inside the margin, so it counts as expired
    assert await run() == DIGEST
    assert len(wire.fake.token_calls) == 2
    assert [c.authorization is not None for c in wire.fake.calls] == [False, True, True, True]


async def test_a_kept_token_the_registry_refuses_is_replaced_in_the_same_run(wire: Wire, tmp_path: Path) -> None:
    facts = HostFacts()
    assert await one_run(wire, tmp_path, facts) == DIGEST
    wire.fake.tokens.clear()  # the registry forgot it (revoked, restarted with a new key)
    wire.fake.calls.clear()
    assert await one_run(wire, tmp_path, facts) == DIGEST
    assert len(wire.fake.token_calls) == 2
    assert [c.authorization is not None for c in wire.fake.calls] == [True, True]  # refused, then the new one


async def test_a_kept_token_is_scrubbed_from_the_next_runs_texts(wire: Wire, tmp_path: Path) -> None:
    facts = HostFacts()
    assert await one_run(wire, tmp_path, facts) == DIGEST
    [kept] = facts.tokens.values()
    async with RegistryClient(tls=tls(tmp_path), transport=wire.transport(), facts=facts) as client:
        assert kept.value not in client.scrub(f"the registry said: token {kept.value} is odd")


async def test_without_facts_every_run_probes_again(wire: Wire, tmp_path: Path) -> None:
    for _ in range(2):
        wire.attempts.clear()
        assert await one_run(wire, tmp_path, None) == DIGEST
        assert wire.attempts == [("https", "HEAD"), ("http", "HEAD"), ("http", "HEAD")]


async def test_a_registry_that_moved_to_https_is_probed_afresh_within_the_run(wire: Wire, tmp_path: Path) -> None:
    facts = HostFacts()
    assert await one_run(wire, tmp_path, facts) == DIGEST  # learns http
    wire.refuse = {"http"}  # the registry now speaks TLS only
    wire.attempts.clear()
    assert await one_run(wire, tmp_path, facts) == DIGEST
    assert [scheme for scheme, _ in wire.attempts] == ["http", "https"]  # recalled, refused, probed afresh
    wire.attempts.clear()
    assert await one_run(wire, tmp_path, facts) == DIGEST
    assert [scheme for scheme, _ in wire.attempts] == ["https"]  # the new fact is kept


async def test_a_registry_that_changed_its_auth_scheme_heals_the_recalled_challenge(tmp_path: Path) -> None:
    fake = FakeRegistry(auth="bearer")
    fake.put("team/app", "1.0", MANIFEST, mf.OCI_MANIFEST)
    wire = Wire(fake)
    creds = Credentials(fake.user, fake.password)
    facts = HostFacts()
    assert await one_run(wire, tmp_path, facts, creds) == DIGEST  # recalls a Bearer challenge
    fake.auth = "basic"
    fake.calls.clear()
    assert await one_run(wire, tmp_path, facts, creds) == DIGEST
    headers = [(c.authorization or "").split(" ")[0] for c in fake.calls]
    assert headers == ["Bearer", "Basic"]  # the stale token is refused, the 401's Basic challenge wins


async def test_a_real_registry_sees_no_401_on_the_next_run(auth_registry: Registry, tmp_path: Path) -> None:
    """Against a real htpasswd registry (plain HTTP, insecure): the second run's only request
    is the HEAD with credentials up front, as its access log shows."""
    digest = oci.push(
        oci.build_image(tmp_path / "img", seed="facts"), auth_registry, "facts/app:1", creds=(AUTH_USER, AUTH_PASSWORD)
    )
    ref = parse(f"{auth_registry.host_port}/facts/app:1")
    conf = f'[[registry]]\nlocation = "{auth_registry.host_port}"\ninsecure = true\n'
    creds = Credentials(AUTH_USER, AUTH_PASSWORD)
    facts = HostFacts()
    seen = []
    for _ in range(2):
        auth_registry.mark()
        async with RegistryClient(tls=tls(tmp_path, conf), facts=facts) as client:
            assert (await client.head_manifest(ref, "1", creds)).digest == digest
        seen.append([(r.method, r.status) for r in auth_registry.requests() if r.path.startswith("/v2/facts/")])
    assert seen == [[("HEAD", 401), ("HEAD", 200)], [("HEAD", 200)]]

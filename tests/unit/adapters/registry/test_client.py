"""RegistryClient against an in-process fake registry: auth, tokens, faults, secrets."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from autoupdated import manifest as mf
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.errors import (
    AuthenticationRequired,
    ManifestUnknown,
    RegistryBlocked,
    RegistryConnectionError,
    RegistryError,
    RegistryLies,
    RegistryProtocolError,
    RegistryServerError,
    RegistryTimeout,
    RegistryTLSError,
    TooManyRequests,
)
from autoupdated.model import Credentials
from autoupdated.reference import parse
from tests.harness.registry import FakeRegistry, free_port

MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "config": {"digest": "sha256:" + "a" * 64}, "layers": []}
).encode()
REF = parse("registry.test/team/app:1.0")


def tls_config(tmp_path: Path, registries_conf: str = "", **kw: object) -> TLSConfig:
    conf = tmp_path / "registries.conf"
    conf.write_text(registries_conf)
    return TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[], **kw)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeRegistry:
    registry = FakeRegistry()
    registry.put("team/app", "1.0", MANIFEST, mf.OCI_MANIFEST)
    return registry


@pytest.fixture
async def client(fake: FakeRegistry, tmp_path: Path) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(tls=tls_config(tmp_path), transport=fake.transport()) as c:
        yield c


class Secrets:
    """Collects every text a test produced, to prove no secret leaks."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.texts: list[str] = []

    def add(self, err: BaseException) -> BaseException:
        self.texts.append(str(err))
        self.texts.append(repr(err))
        return err

    def assert_clean(self, *secrets: str) -> None:
        everything = "\n".join([self.caplog.text, *self.texts])
        for secret in secrets:
            assert secret not in everything


@pytest.fixture
def secrets(caplog: pytest.LogCaptureFixture) -> Iterator[Secrets]:
    caplog.set_level(logging.DEBUG)
    yield Secrets(caplog)


DIGEST = mf.compute_digest(MANIFEST)


async def test_anonymous_head_reads_the_digest(fake: FakeRegistry, client: RegistryClient) -> None:
    head = await client.head_manifest(REF, "1.0", None)
    assert head.digest == DIGEST and head.media_type == mf.OCI_MANIFEST
    (call,) = fake.calls
    assert (call.method, call.url) == ("HEAD", "https://registry.test/v2/team/app/manifests/1.0")
    assert call.accept == mf.ACCEPT and call.authorization is None


async def test_docker_hub_names(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.put("library/nginx", "latest", MANIFEST, mf.OCI_MANIFEST)
    fake.override[("HEAD", "/v2/library/nginx/manifests/latest")] = lambda r: httpx.Response(
        200, headers={"Docker-Content-Digest": DIGEST}
    )
    head = await client.head_manifest(parse("docker.io/nginx:latest"), "latest", None)
    assert head.digest == DIGEST
    assert fake.calls[0].host == "registry-1.docker.io"


async def test_basic_auth_after_challenge_then_up_front(fake: FakeRegistry, tmp_path: Path, secrets: Secrets) -> None:
    fake.auth = "basic"
    creds = Credentials(fake.user, fake.password)
    async with RegistryClient(tls=tls_config(tmp_path), transport=fake.transport()) as client:
        assert (await client.head_manifest(REF, "1.0", creds)).digest == DIGEST
        assert [c.authorization is not None for c in fake.calls] == [False, True]
        assert (await client.head_manifest(REF, "1.0", creds)).digest == DIGEST
        assert len(fake.calls) == 3 and fake.calls[2].authorization is not None  # no second 401
    secrets.assert_clean(fake.password)


async def test_basic_auth_without_credentials(fake: FakeRegistry, client: RegistryClient, secrets: Secrets) -> None:
    fake.auth = "basic"
    with pytest.raises(AuthenticationRequired) as info:
        await client.head_manifest(REF, "1.0", None)
    message = str(secrets.add(info.value))
    assert message.startswith("reading manifest 1.0 in registry.test/team/app: authentication required; ")
    assert "registry.test" in message and "podman login registry.test" in message and "authfile" in message
    assert len(fake.calls) == 1  # nothing to retry with


async def test_basic_auth_bad_password_never_shows_it(
    fake: FakeRegistry, client: RegistryClient, secrets: Secrets
) -> None:
    fake.auth = "basic"
    wrong = "wr0ng-pa55word-xyz"
    with pytest.raises(AuthenticationRequired) as info:
        await client.head_manifest(REF, "1.0", Credentials(fake.user, wrong))
    secrets.add(info.value)
    assert ": authentication required; " in str(info.value)
    assert "refused the credentials of 'user'" in str(info.value)
    secrets.assert_clean(wrong, base64.b64encode(f"user:{wrong}".encode()).decode())


async def test_bearer_token_fetched_once_for_many_concurrent_requests(
    fake: FakeRegistry, tmp_path: Path, secrets: Secrets
) -> None:
    fake.auth = "bearer"
    fake.token_delay = 0.05
    for i in range(20):
        fake.put("team/app", f"t{i}", MANIFEST, mf.OCI_MANIFEST)
    creds = Credentials(fake.user, fake.password)
    async with RegistryClient(tls=tls_config(tmp_path), transport=fake.transport()) as client:
        heads = await asyncio.gather(*(client.head_manifest(REF, f"t{i}", creds) for i in range(20)))
    assert {h.digest for h in heads} == {DIGEST}
    assert len(fake.token_calls) == 1
    token_request = fake.token_calls[0]
    assert token_request.url.params["service"] == "registry.test"
    assert token_request.url.params["scope"] == "repository:team/app:pull"
    assert token_request.headers["Authorization"].startswith("Basic ")
    assert fake.count("HEAD") == 21  # one 401 (the first request goes alone), then 20 with the token
    assert sum(1 for c in fake.calls if c.authorization is None) == 1
    secrets.assert_clean(fake.password, *fake.tokens)


async def test_bearer_token_per_scope_and_anonymous(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.auth = "bearer"
    fake.put("team/other", "1.0", MANIFEST, mf.OCI_MANIFEST)
    await client.head_manifest(REF, "1.0", None)
    await client.head_manifest(parse("registry.test/team/other:1.0"), "1.0", None)
    await client.head_manifest(REF, "1.0", None)
    scopes = [r.url.params["scope"] for r in fake.token_calls]
    assert scopes == ["repository:team/app:pull", "repository:team/other:pull"]
    assert all("Authorization" not in r.headers for r in fake.token_calls)
    # the second repository was authenticated up front: no second 401
    assert [c.authorization is None for c in fake.calls] == [True, False, False, False]


async def test_token_cached_for_expires_in_minus_margin(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.auth = "bearer"
    fake.expires_in = 120
    now = [1000.0]
    async with RegistryClient(
        tls=tls_config(tmp_path), transport=fake.transport(), clock=lambda: now[0], token_margin=10
    ) as client:
        await client.head_manifest(REF, "1.0", None)
        now[0] += 109
        await client.head_manifest(REF, "1.0", None)
        assert len(fake.token_calls) == 1
        now[0] += 2  # 111 s > 120 - 10
        await client.head_manifest(REF, "1.0", None)
        assert len(fake.token_calls) == 2


async def test_token_default_lifetime_is_60s(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.auth = "bearer"
    fake.expires_in = None
    now = [0.0]
    async with RegistryClient(
        tls=tls_config(tmp_path), transport=fake.transport(), clock=lambda: now[0], token_margin=10
    ) as client:
        await client.head_manifest(REF, "1.0", None)
        now[0] = 49
        await client.head_manifest(REF, "1.0", None)
        assert len(fake.token_calls) == 1
        now[0] = 51
        await client.head_manifest(REF, "1.0", None)
        assert len(fake.token_calls) == 2


async def test_identity_token_uses_oauth2_post(fake: FakeRegistry, client: RegistryClient, secrets: Secrets) -> None:
    fake.auth = "bearer"
    creds = Credentials("", "", identity_token=fake.refresh_token)
    assert (await client.head_manifest(REF, "1.0", creds)).digest == DIGEST
    (token_request,) = fake.token_calls
    assert token_request.method == "POST"
    form = token_request.content.decode()
    assert "grant_type=refresh_token" in form and "scope=repository%3Ateam%2Fapp%3Apull" in form
    secrets.assert_clean(fake.refresh_token, *fake.tokens)


async def test_token_service_refuses_credentials(fake: FakeRegistry, client: RegistryClient, secrets: Secrets) -> None:
    fake.auth = "bearer"
    bad = "n0t-the-pa55word"
    with pytest.raises(AuthenticationRequired) as info:
        await client.head_manifest(REF, "1.0", Credentials(fake.user, bad))
    message = str(secrets.add(info.value))
    assert message.startswith("authentication required: the token service of registry.test refused")
    assert "podman login registry.test" in message
    secrets.assert_clean(bad)


async def test_token_not_sent_over_plain_http_realm(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.override[("HEAD", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(
        401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.test/token",service="s"'}
    )
    with pytest.raises(RegistryTLSError, match="plain-HTTP token service"):
        await client.head_manifest(REF, "1.0", Credentials("u", "p"))
    assert fake.token_calls == []


async def test_unparseable_challenge(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.override[("HEAD", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(
        401, headers={"WWW-Authenticate": 'Bearer realm="unterminated'}
    )
    with pytest.raises(RegistryProtocolError, match="malformed WWW-Authenticate"):
        await client.head_manifest(REF, "1.0", None)


async def test_unsupported_scheme(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.override[("HEAD", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(
        401, headers={"WWW-Authenticate": "Negotiate"}
    )
    with pytest.raises(AuthenticationRequired, match="unsupported auth scheme"):
        await client.head_manifest(REF, "1.0", None)


async def test_404_names_reference_and_tag(client: RegistryClient) -> None:
    with pytest.raises(ManifestUnknown) as info:
        await client.head_manifest(parse("registry.test/team/app:nope"), "nope", None)
    message = str(info.value)
    assert message.startswith("reading manifest nope in registry.test/team/app: manifest unknown; ")
    assert "registry.test/team/app" in message and "'nope'" in message


async def test_404_on_get_includes_registry_error_code(client: RegistryClient) -> None:
    with pytest.raises(ManifestUnknown, match="MANIFEST_UNKNOWN: manifest unknown"):
        await client.get_manifest(parse("registry.test/team/app:nope"), "nope", None)


@pytest.mark.parametrize(("retry_after", "expected"), [("30", 30.0), (None, None)])
async def test_429_with_retry_after(
    fake: FakeRegistry, client: RegistryClient, retry_after: str | None, expected: float | None
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    fake.override[("HEAD", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(429, headers=headers)
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:  # the backoff waits (test_backoff.py times them)
        waits.append(seconds)

    client._sleep = no_wait
    with pytest.raises(TooManyRequests) as info:
        await client.head_manifest(REF, "1.0", None)
    assert str(info.value).startswith("too many requests to registry.test")
    assert info.value.retry_after == expected
    if expected:
        assert "retry after 30 s" in str(info.value)


async def test_5xx(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.override[("*", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(
        503, json={"errors": [{"code": "UNAVAILABLE", "message": "maintenance"}]}
    )
    with pytest.raises(RegistryServerError) as info:
        await client.get_manifest(REF, "1.0", None)
    assert "HTTP 503" in str(info.value) and "UNAVAILABLE: maintenance" in str(info.value)
    assert info.value.status == 503


async def test_redirect_to_another_host_drops_credentials(
    fake: FakeRegistry, client: RegistryClient, secrets: Secrets
) -> None:
    fake.auth = "basic"
    creds = Credentials(fake.user, fake.password)
    fake.override[("GET", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(
        307, headers={"Location": "https://cdn.test/blob/manifest"}
    )
    fake.override[("GET", "/blob/manifest")] = lambda r: httpx.Response(
        200, content=MANIFEST, headers={"Content-Type": mf.OCI_MANIFEST}
    )
    await client.head_manifest(REF, "1.0", creds)  # learn the basic challenge
    body = await client.get_manifest(REF, "1.0", creds)
    assert body.body == MANIFEST and body.digest == DIGEST
    cdn = [c for c in fake.calls if c.host == "cdn.test"]
    assert len(cdn) == 1 and cdn[0].authorization is None
    registry_get = [c for c in fake.calls if c.host == "registry.test" and c.method == "GET"]
    assert registry_get[0].authorization is not None
    secrets.assert_clean(fake.password)


async def test_same_host_redirect_keeps_credentials(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.auth = "basic"
    creds = Credentials(fake.user, fake.password)
    fake.override[("HEAD", "/v2/team/app/manifests/1.0")] = lambda r: (
        httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        if "Authorization" not in r.headers
        else httpx.Response(302, headers={"Location": "/v2/team/app/manifests/" + DIGEST})
    )
    head = await client.head_manifest(REF, "1.0", creds)
    assert head.digest == DIGEST
    assert fake.calls[-1].path.endswith(DIGEST) and fake.calls[-1].authorization is not None


async def test_redirect_to_plain_http_refused(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.override[("HEAD", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(
        301, headers={"Location": "http://registry.test/v2/team/app/manifests/1.0"}
    )
    with pytest.raises(RegistryTLSError, match="from HTTPS to plain HTTP"):
        await client.head_manifest(REF, "1.0", None)
    assert all(c.url.startswith("https://") for c in fake.calls)


async def test_registry_lies_when_body_does_not_match_digest(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.lie_on_get = True
    with pytest.raises(RegistryLies) as info:
        await client.get_manifest(REF, DIGEST, None)
    assert str(info.value).startswith("registry lies:") and DIGEST in str(info.value)
    with pytest.raises(RegistryLies):
        await client.get_manifest(REF, "1.0", None)  # the response's own Docker-Content-Digest


async def test_missing_digest_header_means_body_hash(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.digest_header = False
    assert (await client.head_manifest(REF, "1.0", None)).digest is None
    body = await client.get_manifest(REF, "1.0", None)
    assert body.digest == DIGEST


async def test_malformed_digest_header(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.override[("HEAD", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(
        200, headers={"Docker-Content-Digest": "sha256:xyz"}
    )
    with pytest.raises(RegistryProtocolError, match="malformed digest"):
        await client.head_manifest(REF, "1.0", None)


async def test_oversized_manifest(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.override[("GET", "/v2/team/app/manifests/1.0")] = lambda r: httpx.Response(
        200, content=b" " * (mf.MAX_MANIFEST_SIZE + 10)
    )
    with pytest.raises(RegistryProtocolError, match="more than the"):
        await client.get_manifest(REF, "1.0", None)


async def test_timeout_names_the_host(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.delay = 2
    async with RegistryClient(tls=tls_config(tmp_path), transport=fake.transport(), timeout=0.2) as client:
        with pytest.raises(RegistryTimeout) as info:
            await client.head_manifest(REF, "1.0", None)
    assert "timed out after 0.2 s talking to registry.test" in str(info.value)


async def test_connection_refused_names_the_host(tmp_path: Path) -> None:
    port = free_port()
    ref = parse(f"127.0.0.1:{port}/app:1")
    async with RegistryClient(tls=tls_config(tmp_path)) as client:
        with pytest.raises(RegistryConnectionError) as info:
            await client.head_manifest(ref, "1", None)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "connection refused" in str(info.value)


async def test_an_insecure_registry_neither_scheme_reaches_says_so_once(tmp_path: Path) -> None:
    """Both schemes asked at once, both refused: one error, the refusal said once."""
    port = free_port()
    ref = parse(f"127.0.0.1:{port}/app:1")
    conf = f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n'
    async with RegistryClient(tls=tls_config(tmp_path, conf)) as client:
        with pytest.raises(RegistryConnectionError) as info:
            await client.head_manifest(ref, "1", None)
    text = str(info.value)
    assert text.endswith("(over HTTPS and plain HTTP)") and text.count("connection refused") == 1, text


async def test_insecure_registry_falls_back_to_http_once(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.fail_https = True
    conf = '[[registry]]\nlocation = "registry.test"\ninsecure = true\n'
    async with RegistryClient(tls=tls_config(tmp_path, conf), transport=fake.transport()) as client:
        assert (await client.head_manifest(REF, "1.0", None)).digest == DIGEST
        assert (await client.head_manifest(REF, "1.0", None)).digest == DIGEST
    assert [c.url.split(":")[0] for c in fake.calls] == ["http", "http"]  # https failed before reaching it


async def test_an_insecure_registry_that_speaks_https_keeps_https(fake: FakeRegistry, tmp_path: Path) -> None:
    """The first, credential-less request asks over both schemes at once; HTTPS answered, so
    HTTPS is what every later request uses."""
    conf = '[[registry]]\nlocation = "registry.test"\ninsecure = true\n'
    async with RegistryClient(tls=tls_config(tmp_path, conf), transport=fake.transport()) as client:
        assert (await client.head_manifest(REF, "1.0", None)).digest == DIGEST
        assert (await client.head_manifest(REF, "1.0", None)).digest == DIGEST
    schemes = [c.url.split(":")[0] for c in fake.calls]
    assert schemes[0:2] in (["https", "http"], ["http", "https"]) and schemes[2:] == ["https"]


async def test_plain_http_is_asked_at_once_and_used_when_https_fails(fake: FakeRegistry, tmp_path: Path) -> None:
    """A plain-HTTP registry: HTTPS decides (it would win if it answered), so the first request
    ends when HTTPS fails; the answer over HTTP was asked at the same time and is ready then,
    one round trip sooner than asking after the failure.  Later requests go over HTTP only."""
    real = fake.handle

    async def slow_tls(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            await asyncio.sleep(0.5)
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number", request=request)
        return await real(request)

    conf = '[[registry]]\nlocation = "registry.test"\ninsecure = true\n'
    async with RegistryClient(tls=tls_config(tmp_path, conf), transport=httpx.MockTransport(slow_tls)) as client:
        t0 = asyncio.get_running_loop().time()
        assert (await client.head_manifest(REF, "1.0", None)).digest == DIGEST
        # the HTTPS attempt is still failing: its answer decides, so this took its 0.5 s ...
        assert asyncio.get_running_loop().time() - t0 >= 0.45
        t1 = asyncio.get_running_loop().time()
        assert (await client.head_manifest(REF, "1.0", None)).digest == DIGEST
        assert asyncio.get_running_loop().time() - t1 < 0.2  # ... once: then plain HTTP at once
    assert [c.url.split(":")[0] for c in fake.calls] == ["http", "http"]


async def test_credentials_never_race_over_plain_http(tmp_path: Path) -> None:
    """Basic auth on an insecure registry that speaks HTTPS: the probe raced (no credentials),
    the 401 came over HTTPS, and the credentials went over HTTPS only."""
    fake = FakeRegistry(auth="basic")
    fake.put("team/app", "1.0", MANIFEST, mf.OCI_MANIFEST)
    conf = '[[registry]]\nlocation = "registry.test"\ninsecure = true\n'
    creds = Credentials(fake.user, fake.password)
    async with RegistryClient(tls=tls_config(tmp_path, conf), transport=fake.transport()) as client:
        assert (await client.head_manifest(REF, "1.0", creds)).digest == DIGEST
    with_auth = [c for c in fake.calls if c.authorization]
    assert with_auth and all(c.url.startswith("https://") for c in with_auth)


async def test_secure_registry_never_falls_back_to_http(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.fail_https = True
    with pytest.raises(RegistryTLSError, match="does not speak TLS"):
        await client.head_manifest(REF, "1.0", None)
    assert fake.calls == []


async def test_tls_verify_true_overrides_insecure(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.fail_https = True
    conf = '[[registry]]\nlocation = "registry.test"\ninsecure = true\n'
    async with RegistryClient(tls=tls_config(tmp_path, conf, tls_verify=True), transport=fake.transport()) as client:
        with pytest.raises(RegistryTLSError):
            await client.head_manifest(REF, "1.0", None)
        assert client.tls_verify_for(REF) is True
    assert fake.calls == []


async def test_blocked_registry(fake: FakeRegistry, tmp_path: Path) -> None:
    conf = '[[registry]]\nlocation = "registry.test"\nblocked = true\n'
    async with RegistryClient(tls=tls_config(tmp_path, conf), transport=fake.transport()) as client:
        with pytest.raises(RegistryBlocked, match=r"blocked in registries\.conf"):
            await client.head_manifest(REF, "1.0", None)
    assert fake.calls == []


async def test_concurrency_bounded_per_host(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.delay = 0.02
    for i in range(12):
        fake.put("team/app", f"c{i}", MANIFEST, mf.OCI_MANIFEST)
    async with RegistryClient(
        tls=tls_config(tmp_path), transport=fake.transport(), per_registry_concurrency=3
    ) as client:
        await asyncio.gather(*(client.head_manifest(REF, f"c{i}", None) for i in range(12)))
    assert fake.max_in_flight == 3


async def test_every_error_is_a_registry_error_without_secrets(
    fake: FakeRegistry, tmp_path: Path, secrets: Secrets
) -> None:
    """Walk the failure modes with credentials set and debug logging on; no secret anywhere."""
    fake.auth = "bearer"
    creds = Credentials(fake.user, fake.password)
    scenarios = [
        lambda: None,
        lambda: fake.override.__setitem__(("*", "/v2/team/app/manifests/1.0"), lambda r: httpx.Response(500)),
        fake.override.clear,
        lambda: fake.override.__setitem__(
            ("GET", "/v2/team/app/manifests/1.0"),
            lambda r: httpx.Response(401, json={"errors": [{"code": "X", "message": f"echo {fake.password}"}]}),
        ),
    ]
    for setup in scenarios:
        setup()
        async with RegistryClient(tls=tls_config(tmp_path), transport=fake.transport()) as client:
            try:
                await client.head_manifest(REF, "1.0", creds)
                await client.get_manifest(REF, "1.0", creds)
            except RegistryError as err:
                secrets.add(err)
    assert any("<redacted>" in text for text in secrets.texts)
    secrets.assert_clean(fake.password, *fake.tokens, base64.b64encode(f"user:{fake.password}".encode()).decode())


async def test_refused_cached_token_is_refetched_once_for_all(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.auth = "bearer"
    for i in range(6):
        fake.put("team/app", f"r{i}", MANIFEST, mf.OCI_MANIFEST)
    await client.head_manifest(REF, "1.0", None)
    assert len(fake.token_calls) == 1
    fake.tokens.clear()  # the registry forgets every token it issued (e.g. a key rotation)
    fake.token_delay = 0.05
    heads = await asyncio.gather(*(client.head_manifest(REF, f"r{i}", None) for i in range(6)))
    assert {h.digest for h in heads} == {DIGEST}
    assert len(fake.token_calls) == 2

"""DigestComparer and RegistryClient against real distribution registries (docker-registry).

The registry's access log is the witness: how many HEADs and GETs each check really sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoupdated.adapters.registry.authfile import credentials_for
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.errors import AuthenticationRequired, RegistryError, RegistryTLSError
from autoupdated.model import Credentials, Platform
from autoupdated.parts.digest import CheckResult, DigestComparer
from autoupdated.reference import parse
from tests.harness import oci
from tests.harness.registry import Registry, TokenServer, live_registry_pids
from tests.harness.registry_fixtures import AUTH_PASSWORD, AUTH_USER, IDENTITY_TOKEN, TOKEN_PASSWORD, TOKEN_USER

pytestmark = pytest.mark.registry

AMD64 = Platform("linux", "amd64")


def tls_config(
    tmp_path: Path, *, insecure: list[str] = (), certs: Path | None = None, tls_verify: bool | None = None
) -> TLSConfig:  # type: ignore[assignment]
    conf = tmp_path / "registries.conf"
    conf.write_text("".join(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n' for host in insecure))
    empty = tmp_path / "no-certs"
    empty.mkdir(exist_ok=True)
    return TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[certs or empty], tls_verify=tls_verify)


async def run_checks(
    tls: TLSConfig, questions: list[tuple[str, Credentials | None, Platform, frozenset[str]]]
) -> list[CheckResult | RegistryError]:
    async with RegistryClient(tls=tls) as client:
        comparer = DigestComparer(client)

        async def one(ref: str, creds: Credentials | None, platform: Platform, local: frozenset[str]) -> object:
            try:
                return await comparer.check(parse(ref), credentials=creds, platform=platform, local_digests=local)
            except RegistryError as err:
                return err

        return list(await asyncio.gather(*(one(*q) for q in questions)))  # type: ignore[arg-type]


@pytest.fixture
def everything(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    """Debug logging on; yields a list to which tests add error texts; at the end holds all output."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    yield texts


def assert_no_secret(
    texts: list[str], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], *secrets: str
) -> None:
    out, err = capfd.readouterr()
    haystack = "\n".join([*texts, caplog.text, out, err])
    for secret in secrets:
        assert secret not in haystack


# -- plain registry, insecure via registries.conf ------------------------------------------------


async def test_nothing_new_is_one_head_and_no_get(registry: Registry, tmp_path: Path) -> None:
    image = oci.build_image(tmp_path / "img", seed="plain-1")
    digest = oci.push(image, registry, "plain/app:latest")
    assert digest == image.digest
    ref = f"{registry.host_port}/plain/app:latest"
    tls = tls_config(tmp_path, insecure=[registry.host_port])
    registry.mark()
    results = await run_checks(tls, [(ref, None, AMD64, frozenset({digest}))] * 10)
    assert results == [CheckResult(False, digest)] * 10
    requests = [r for r in registry.requests() if r.path.startswith("/v2/plain/")]
    assert [(r.method, r.path, r.status) for r in requests] == [("HEAD", "/v2/plain/app/manifests/latest", 200)]
    assert not any(r.path == "/v2/" for r in registry.requests())  # no ping

    newer = oci.build_image(tmp_path / "img2", seed="plain-2")
    new_digest = oci.push(newer, registry, "plain/app:latest")
    registry.mark()
    (result,) = await run_checks(tls, [(ref, None, AMD64, frozenset({digest}))])
    assert result == CheckResult(True, new_digest)
    assert [(r.method, r.path) for r in registry.requests()] == [("HEAD", "/v2/plain/app/manifests/latest")]


async def test_distinct_references_one_head_each(registry: Registry, tmp_path: Path) -> None:
    digests = {}
    for name in ("a", "b", "c"):
        digests[name] = oci.push(
            oci.build_image(tmp_path / name, seed=f"distinct-{name}"), registry, f"distinct/{name}:1"
        )
    tls = tls_config(tmp_path, insecure=[registry.host_port])
    registry.mark()
    questions = [
        (f"{registry.host_port}/distinct/{name}:1", None, AMD64, frozenset({digests[name]}))
        for name in ("a", "b", "c")
        for _ in range(4)
    ]
    results = await run_checks(tls, questions)
    assert all(isinstance(r, CheckResult) and not r.update_available for r in results)
    requests = registry.requests()
    assert sorted((r.method, r.path) for r in requests) == [
        ("HEAD", f"/v2/distinct/{name}/manifests/1") for name in ("a", "b", "c")
    ]


async def test_plain_registry_not_marked_insecure_is_refused(registry: Registry, tmp_path: Path) -> None:
    oci.push(oci.build_image(tmp_path / "img", seed="refused"), registry, "refused/app:1")
    registry.mark()
    (result,) = await run_checks(
        tls_config(tmp_path), [(f"{registry.host_port}/refused/app:1", None, AMD64, frozenset())]
    )
    assert isinstance(result, RegistryTLSError)
    assert "does not speak TLS" in str(result) and "insecure" in str(result)
    assert registry.requests() == []  # nothing reached the HTTP handler: no plain-HTTP downgrade


async def test_tls_verify_false_reaches_plain_registry(registry: Registry, tmp_path: Path) -> None:
    digest = oci.push(oci.build_image(tmp_path / "img", seed="noverify"), registry, "noverify/app:1")
    (result,) = await run_checks(
        tls_config(tmp_path, tls_verify=False),
        [(f"{registry.host_port}/noverify/app:1", None, AMD64, frozenset({digest}))],
    )
    assert result == CheckResult(False, digest)


async def test_missing_tag_is_manifest_unknown(registry: Registry, tmp_path: Path) -> None:
    (result,) = await run_checks(
        tls_config(tmp_path, insecure=[registry.host_port]),
        [(f"{registry.host_port}/nosuch/app:gone", None, AMD64, frozenset())],
    )
    assert isinstance(result, RegistryError)
    assert str(result).startswith(f"reading manifest gone in {registry.host_port}/nosuch/app: manifest unknown; ")
    assert "nosuch/app" in str(result) and "'gone'" in str(result)


# -- multi-arch ------------------------------------------------------------------------------


async def test_multi_arch_index_platform_pick(registry: Registry, tmp_path: Path) -> None:
    layout = oci.build_index(tmp_path / "idx", seed="multi-1")
    assert oci.push(layout, registry, "multi/app:latest") == layout.digest
    ref = f"{registry.host_port}/multi/app:latest"
    tls = tls_config(tmp_path, insecure=[registry.host_port])
    amd64 = layout.instances[AMD64]
    arm64 = layout.instances[Platform("linux", "arm64", "v8")]
    armv7 = layout.instances[Platform("linux", "arm", "v7")]
    registry.mark()
    results = await run_checks(
        tls,
        [
            (ref, None, AMD64, frozenset({amd64})),
            (ref, None, Platform("linux", "arm64"), frozenset({arm64})),  # no variant: v8 fallback
            (ref, None, Platform("linux", "arm", "v7"), frozenset({"sha256:" + "0" * 64})),
            (ref, None, AMD64, frozenset({layout.digest})),  # pulled by index digest
        ],
    )
    assert results == [
        CheckResult(False, amd64),
        CheckResult(False, arm64),
        CheckResult(True, armv7),
        CheckResult(False, layout.digest),
    ]
    requests = [(r.method, r.path) for r in registry.requests()]
    assert requests.count(("HEAD", "/v2/multi/app/manifests/latest")) == 1
    assert requests.count(("GET", f"/v2/multi/app/manifests/{layout.digest}")) == 1
    assert len(requests) == 2

    # one instance changes: only that platform sees an update
    changed = oci.build_index(tmp_path / "idx2", seed="multi-1", seeds={AMD64: "multi-2"})
    oci.push(changed, registry, "multi/app:latest")
    results = await run_checks(
        tls, [(ref, None, AMD64, frozenset({amd64})), (ref, None, Platform("linux", "arm64", "v8"), frozenset({arm64}))]
    )
    assert results == [CheckResult(True, changed.instances[AMD64]), CheckResult(False, arm64)]


async def test_docker_schema2_list(registry: Registry, tmp_path: Path) -> None:
    layout = oci.build_index(tmp_path / "idx", seed="v2s2")
    list_digest = oci.push(layout, registry, "dockerlist/app:1", format="v2s2")
    with registry.http() as http:
        response = http.get(
            f"/v2/dockerlist/app/manifests/{list_digest}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.list.v2+json"},
        )
    doc = json.loads(response.content)
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    amd64 = next(m["digest"] for m in doc["manifests"] if m["platform"]["architecture"] == "amd64")
    ref = f"{registry.host_port}/dockerlist/app:1"
    results = await run_checks(
        tls_config(tmp_path, insecure=[registry.host_port]), [(ref, None, AMD64, frozenset({amd64}))]
    )
    assert results == [CheckResult(False, amd64)]


async def test_docker_schema2_single(registry: Registry, tmp_path: Path) -> None:
    digest = oci.push(
        oci.build_image(tmp_path / "img", seed="v2s2-single"), registry, "dockersingle/app:1", format="v2s2"
    )
    registry.mark()
    ref = f"{registry.host_port}/dockersingle/app:1"
    results = await run_checks(
        tls_config(tmp_path, insecure=[registry.host_port]), [(ref, None, AMD64, frozenset({digest}))]
    )
    assert results == [CheckResult(False, digest)]
    assert [r.method for r in registry.requests()] == ["HEAD"]


# -- htpasswd -------------------------------------------------------------------------------


async def test_htpasswd_good_bad_and_missing_credentials(
    auth_registry: Registry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    digest = oci.push(
        oci.build_image(tmp_path / "img", seed="auth"), auth_registry, "auth/app:1", creds=(AUTH_USER, AUTH_PASSWORD)
    )
    ref = f"{auth_registry.host_port}/auth/app:1"
    authfile = tmp_path / "auth.json"
    token = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {auth_registry.host_port: {"auth": token}}}))
    good = credentials_for(parse(ref), str(authfile))
    assert good == Credentials(AUTH_USER, AUTH_PASSWORD)
    wrong_password = "Wr0ng-" + AUTH_PASSWORD[::-1]
    tls = tls_config(tmp_path, insecure=[auth_registry.host_port])
    auth_registry.mark()
    results = await run_checks(
        tls,
        [
            (ref, good, AMD64, frozenset({digest})),
            (ref, Credentials(AUTH_USER, wrong_password), AMD64, frozenset({digest})),
            (ref, None, AMD64, frozenset({digest})),
        ],
    )
    assert results[0] == CheckResult(False, digest)
    texts = []
    for result in results[1:]:
        assert isinstance(result, AuthenticationRequired)
        texts += [str(result), repr(result)]
        assert str(result).startswith("reading manifest ") and ": authentication required; " in str(result)
        assert f"podman login {auth_registry.host_port}" in str(result)
    assert "refused the credentials of 'autoupdater'" in str(results[1])
    assert "none were found" in str(results[2])
    heads = [r for r in auth_registry.requests() if r.method == "HEAD"]
    assert all(r.path == "/v2/auth/app/manifests/1" for r in heads)
    assert not [r for r in auth_registry.requests() if r.method == "GET"]
    assert_no_secret(texts, caplog, capfd, AUTH_PASSWORD, wrong_password, token)


# -- TLS with a test CA ----------------------------------------------------------------------


async def test_tls_ca_in_certs_d(tls_registry: Registry, tmp_path: Path) -> None:
    digest = oci.push(oci.build_image(tmp_path / "img", seed="tls"), tls_registry, "tls/app:1")
    ref = f"{tls_registry.host_port}/tls/app:1"
    question = [(ref, None, AMD64, frozenset({digest}))]
    certs = tls_registry.cert_dir(tmp_path / "certs.d")
    assert await run_checks(tls_config(tmp_path, certs=certs), question) == [CheckResult(False, digest)]

    (unknown,) = await run_checks(tls_config(tmp_path), question)
    assert isinstance(unknown, RegistryTLSError)
    assert str(unknown).startswith("x509: certificate signed by unknown authority")
    assert "certs.d" in str(unknown) and "insecure" in str(unknown) and "--tls-verify=false" in str(unknown)

    assert await run_checks(tls_config(tmp_path, tls_verify=False), question) == [CheckResult(False, digest)]
    # insecure registries: HTTPS without verification works too (no HTTP needed)
    assert await run_checks(tls_config(tmp_path, insecure=[tls_registry.host_port]), question) == [
        CheckResult(False, digest)
    ]


async def test_tls_client_certificate(tmp_path: Path) -> None:
    with Registry(tmp_path / "mtls", client_ca=True) as mtls:
        digest = oci.push(oci.build_image(tmp_path / "img", seed="mtls"), mtls, "mtls/app:1")
        question = [(f"{mtls.host_port}/mtls/app:1", None, AMD64, frozenset({digest}))]
        with_cert = mtls.cert_dir(tmp_path / "with-cert", with_client_cert=True)
        assert await run_checks(tls_config(tmp_path, certs=with_cert), question) == [CheckResult(False, digest)]
        without = mtls.cert_dir(tmp_path / "without-cert")
        (result,) = await run_checks(tls_config(tmp_path, certs=without), question)
        assert isinstance(result, RegistryTLSError)
        assert "client certificate" in str(result) and "client.cert" in str(result)


# -- bearer tokens ---------------------------------------------------------------------------


async def test_one_token_request_per_scope(
    token_setup: tuple[Registry, TokenServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    reg, tokens = token_setup
    creds = (TOKEN_USER, TOKEN_PASSWORD)
    digests = {}
    for tag in range(5):
        digests[tag] = oci.push(
            oci.build_image(tmp_path / f"img{tag}", seed=f"tok-{tag}"), reg, f"tok/app:{tag}", creds=creds
        )
    other = oci.push(oci.build_image(tmp_path / "other", seed="tok-other"), reg, "tok/other:1", creds=creds)
    tokens.clear()
    reg.mark()
    good = Credentials(TOKEN_USER, TOKEN_PASSWORD)
    questions = [(f"{reg.host_port}/tok/app:{tag}", good, AMD64, frozenset({digests[tag]})) for tag in range(5)] * 3
    questions += [(f"{reg.host_port}/tok/other:1", good, AMD64, frozenset({other}))] * 3
    results = await run_checks(tls_config(tmp_path, insecure=[reg.host_port]), questions)
    assert all(isinstance(r, CheckResult) and not r.update_available for r in results), results
    assert len(tokens.pull_requests("repository:tok/app:pull")) == 1
    assert len(tokens.pull_requests("repository:tok/other:pull")) == 1
    assert len(tokens.requests) == 2
    heads = [r for r in reg.requests() if r.method == "HEAD"]
    assert [r.status for r in heads].count(401) == 1  # only the very first request learned the challenge
    assert len([r for r in heads if r.status == 200]) == 6
    assert not [r for r in reg.requests() if r.method == "GET"]

    tokens.clear()
    bad = "bad-" + TOKEN_PASSWORD
    (refused,) = await run_checks(
        tls_config(tmp_path, insecure=[reg.host_port]),
        [(f"{reg.host_port}/tok/app:0", Credentials(TOKEN_USER, bad), AMD64, frozenset())],
    )
    assert isinstance(refused, AuthenticationRequired)
    assert str(refused).startswith("authentication required")
    assert_no_secret([str(refused), repr(refused)], caplog, capfd, TOKEN_PASSWORD, bad, *tokens.issued)


async def test_anonymous_token(token_setup: tuple[Registry, TokenServer], tmp_path: Path) -> None:
    reg, tokens = token_setup
    digest = oci.push(
        oci.build_image(tmp_path / "img", seed="anon"), reg, "anon/app:1", creds=(TOKEN_USER, TOKEN_PASSWORD)
    )
    tokens.clear()
    (result,) = await run_checks(
        tls_config(tmp_path, insecure=[reg.host_port]),
        [(f"{reg.host_port}/anon/app:1", None, AMD64, frozenset({digest}))],
    )
    assert result == CheckResult(False, digest)
    (request,) = tokens.requests
    assert request.user is None and request.scope == ["repository:anon/app:pull"]


def test_registry_is_stopped_by_pid(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r").start()
    pid = reg.pid
    assert pid is not None and Path(f"/proc/{pid}").exists() and pid in live_registry_pids()
    reg.stop()
    assert not Path(f"/proc/{pid}").exists() and pid not in live_registry_pids()


async def test_identity_token_oauth2(
    token_setup: tuple[Registry, TokenServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    reg, tokens = token_setup
    digest = oci.push(
        oci.build_image(tmp_path / "img", seed="oauth"), reg, "oauth/app:1", creds=(TOKEN_USER, TOKEN_PASSWORD)
    )
    tokens.clear()
    creds = Credentials(TOKEN_USER, "", identity_token=IDENTITY_TOKEN)
    (result,) = await run_checks(
        tls_config(tmp_path, insecure=[reg.host_port]),
        [(f"{reg.host_port}/oauth/app:1", creds, AMD64, frozenset({digest}))],
    )
    assert result == CheckResult(False, digest)
    (request,) = tokens.requests
    assert (request.method, request.grant_type, request.user) == ("POST", "refresh_token", TOKEN_USER)
    assert_no_secret([], caplog, capfd, IDENTITY_TOKEN, *tokens.issued)


async def test_tls_hostname_mismatch(tmp_path: Path) -> None:
    with Registry(tmp_path / "wrongname", tls=True, identities=("registry.invalid",)) as reg:
        certs = reg.cert_dir(tmp_path / "certs.d")
        (result,) = await run_checks(
            tls_config(tmp_path, certs=certs), [(f"{reg.host_port}/x/app:1", None, AMD64, frozenset())]
        )
    assert isinstance(result, RegistryTLSError)
    assert str(result).startswith("x509: certificate is not valid for 127.0.0.1")

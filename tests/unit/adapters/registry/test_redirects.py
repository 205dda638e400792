"""Redirects to other hosts never get the registry's credentials (real HTTPS servers on 127.0.0.1).

Server A is the registry; it redirects `team/redirected` to server B ("storage"), which answers
401 with a Bearer challenge of its own, whose realm is on B or on a third server C.  Whatever
A's auth scheme and the credentials, nothing secret may reach B or C, in this request or in
any later request of the same run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from autoupdated import manifest as mf
from autoupdated.adapters.registry.client import RegistryClient
from autoupdated.adapters.registry.tlsconfig import TLSConfig
from autoupdated.errors import RegistryError, RegistryProtocolError
from autoupdated.model import Credentials, Platform
from autoupdated.parts.digest import DigestComparer
from autoupdated.reference import parse
from tests.harness.tls_servers import Answer, Seen, TLSServer, write_certs_d

MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "config": {"digest": "sha256:" + "a" * 64}, "layers": []}
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
ALICE = Credentials("alice", "alice-Pa55word-secret")
BOB = Credentials("bob", "bob-Pa55word-secret")
IDENTITY = Credentials("", "", identity_token="alice-identity-t0ken-secret")
REFRESH_USERS = {IDENTITY.identity_token: "alice"}


def _basic(credentials: Credentials) -> str:
    return base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def _manifest(method: str) -> Answer:
    headers = {"Content-Type": mf.OCI_MANIFEST, "Docker-Content-Digest": DIGEST}
    return 200, headers, MANIFEST


@dataclass
class Registry:
    """Server A's behaviour: `auth` is "basic" or "bearer" (token service on A itself)."""

    auth: str
    storage: str = ""  # where team/redirected's manifests are redirected to
    tokens: list[str] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=lambda: {ALICE.username: ALICE.password, BOB.username: BOB.password})
    server: TLSServer | None = None

    def __call__(self, seen: Seen) -> Answer:
        path = urllib.parse.urlsplit(seen.path).path
        if path == "/token":
            return self._token(seen)
        if not self._authorized(seen.headers.get("authorization")):
            assert self.server is not None
            challenge = (
                'Basic realm="registry"'
                if self.auth == "basic"
                else f'Bearer realm="{self.server.url}/token",service="registry-a"'
            )
            return 401, {"WWW-Authenticate": challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
        if path.startswith("/v2/team/redirected/manifests/"):
            return 307, {"Location": f"{self.storage}/storage/blob?sig=abc"}, b""
        return _manifest(seen.method)

    def _authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        if self.auth == "basic":
            return header in {f"Basic {_basic(Credentials(u, p))}" for u, p in self.users.items()}
        return header.startswith("Bearer ") and header[7:] in self.tokens

    def _token(self, seen: Seen) -> Answer:
        header = seen.headers.get("authorization", "")
        if seen.method == "POST":
            form = urllib.parse.parse_qs(seen.body.decode())
            if (form.get("refresh_token") or [""])[0] not in REFRESH_USERS:
                return 401, {}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
        elif header and header not in {f"Basic {_basic(Credentials(u, p))}" for u, p in self.users.items()}:
            return 401, {}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
        token = f"registry-a-token-secret-{len(self.tokens)}"
        self.tokens.append(token)
        return 200, {"Content-Type": "application/json"}, json.dumps({"token": token, "expires_in": 300}).encode()


def _storage_asking_for_auth(realm: str) -> TLSServer:
    """B: answers every request 401 with its own Bearer challenge (realm on itself or elsewhere)."""
    ca = _CA

    def handler(seen: Seen) -> Answer:
        if urllib.parse.urlsplit(seen.path).path == "/token":
            body = json.dumps({"token": "storage-token", "expires_in": 300}).encode()
            return 200, {"Content-Type": "application/json"}, body
        return 401, {"WWW-Authenticate": f'Bearer realm="{realm or server.url + "/token"}",service="storage"'}, b""

    server = TLSServer(ca, handler)
    return server


def _recording_token_service() -> TLSServer:
    """C: a token service that gives a token to anyone (and records what it was sent)."""
    body = json.dumps({"token": "evil-token", "expires_in": 300}).encode()
    return TLSServer(_CA, lambda seen: (200, {"Content-Type": "application/json"}, body))


_CA = trustme.CA()


@pytest.fixture
def servers() -> Iterator[dict[str, TLSServer]]:
    started: dict[str, TLSServer] = {}
    try:
        started["C"] = _recording_token_service().start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def _start(servers: dict[str, TLSServer], registry_auth: str, realm_on: str) -> Registry:
    realm = f"{servers['C'].url}/token" if realm_on == "C" else ""
    servers["B"] = _storage_asking_for_auth(realm).start()
    registry = Registry(registry_auth, storage=servers["B"].url)
    registry.server = servers["A"] = TLSServer(_CA, registry).start()
    return registry


def _client(tmp_path: Path, servers: dict[str, TLSServer]) -> RegistryClient:
    conf = tmp_path / "registries.conf"
    conf.write_text("")
    certs = write_certs_d(_CA, tmp_path / "certs.d", *servers.values())
    tls = TLSConfig(registries_conf=conf, registries_conf_dirs=[], certs_dirs=[certs])
    return RegistryClient(tls=tls, timeout=10)


def _assert_nothing_secret_reached(others: list[TLSServer], registry: Registry, *credentials: Credentials) -> None:
    secrets: list[str] = list(registry.tokens)
    for cred in credentials:
        secrets += [s for s in (cred.password, cred.identity_token) if s]
        if cred.password:
            secrets += [
                _basic(cred),
                _basic(cred).rstrip("="),
                base64.urlsafe_b64encode(f"{cred.username}:{cred.password}".encode()).decode(),
            ]
    for server in others:
        for seen in server.requests():
            assert "authorization" not in seen.headers, (server.url, seen)
            raw = seen.raw()
            for secret in secrets:
                assert secret not in raw, (server.url, seen)


CASES = [
    pytest.param("basic", ALICE, "B", id="basic-realm-on-storage"),
    pytest.param("basic", ALICE, "C", id="basic-realm-elsewhere"),
    pytest.param("bearer", ALICE, "C", id="bearer-password-realm-elsewhere"),
    pytest.param("bearer", IDENTITY, "B", id="bearer-identity-token-realm-on-storage"),
    pytest.param("bearer", IDENTITY, "C", id="bearer-identity-token-realm-elsewhere"),
]


@pytest.mark.parametrize("warm", [False, True], ids=["first-request", "challenge-known"])
@pytest.mark.parametrize(("auth", "credentials", "realm_on"), CASES)
async def test_401_from_a_redirect_target_gets_no_credentials_and_names_both_hosts(
    servers: dict[str, TLSServer], tmp_path: Path, auth: str, credentials: Credentials, realm_on: str, warm: bool
) -> None:
    """`warm`: the registry's challenge is known before the redirect (credentials go up front)."""
    registry = _start(servers, auth, realm_on)
    a, b = servers["A"], servers["B"]
    other = parse(f"{a.host_port}/team/other:1.0")
    async with _client(tmp_path, servers) as client:
        if warm:
            assert (await client.head_manifest(other, "1.0", credentials)).digest == DIGEST
        with pytest.raises(RegistryProtocolError) as info:
            await client.get_manifest(parse(f"{a.host_port}/team/redirected:1.0"), "1.0", credentials)
        message = str(info.value)
        assert a.host_port in message and b.host_port in message
        assert "redirect" in message and "401" in message
        # the same run, another repository, other credentials, not redirected: still nothing to B or C
        assert (await client.get_manifest(other, "1.0", BOB)).digest == DIGEST
        assert (await client.head_manifest(other, "1.0", BOB)).digest == DIGEST
    assert len(b.requests()) == 1  # the redirected GET itself, without credentials
    assert servers["C"].requests() == []
    _assert_nothing_secret_reached([b, servers["C"]], registry, credentials, BOB)
    assert any(s.headers.get("authorization") for s in a.requests())  # A did get credentials


async def test_the_comparer_reports_a_401_from_storage_as_a_registry_error(
    servers: dict[str, TLSServer], tmp_path: Path
) -> None:
    registry = _start(servers, "basic", "C")
    a = servers["A"]
    linux = Platform("linux", "amd64")
    async with _client(tmp_path, servers) as client:
        comparer = DigestComparer(client)
        other = parse(f"{a.host_port}/team/other:1.0")
        first = await comparer.check(other, credentials=ALICE, platform=linux, local_digests=frozenset({DIGEST}))
        assert not first.update_available
        with pytest.raises(RegistryError) as info:
            await comparer.check(
                parse(f"{a.host_port}/team/redirected:1.0"),
                credentials=ALICE,
                platform=linux,
                local_digests=frozenset(),
            )
        later = await comparer.check(other, credentials=BOB, platform=linux, local_digests=frozenset())
        assert later.update_available
    assert "unexpected error" not in str(info.value)
    assert servers["B"].host_port in str(info.value)
    assert servers["C"].requests() == []
    _assert_nothing_secret_reached([servers["B"], servers["C"]], registry, ALICE, BOB)


@pytest.mark.parametrize("auth", ["basic", "bearer"])
async def test_redirect_to_storage_that_answers_200_works_without_credentials(
    servers: dict[str, TLSServer], tmp_path: Path, auth: str
) -> None:
    servers["B"] = TLSServer(_CA, lambda seen: _manifest(seen.method)).start()
    registry = Registry(auth, storage=servers["B"].url)
    registry.server = servers["A"] = TLSServer(_CA, registry).start()
    a = servers["A"]
    async with _client(tmp_path, servers) as client:
        body = await client.get_manifest(parse(f"{a.host_port}/team/redirected:1.0"), "1.0", ALICE)
        head = await client.head_manifest(parse(f"{a.host_port}/team/redirected:1.0"), "1.0", ALICE)
    assert body.body == MANIFEST and body.digest == DIGEST and head.digest == DIGEST
    assert len(servers["B"].requests()) == 2
    _assert_nothing_secret_reached([servers["B"]], registry, ALICE)

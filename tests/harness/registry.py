"""A real distribution registry (`docker-registry serve`) on 127.0.0.1 for tests.

    registry = Registry(tmp_path / "reg", htpasswd={"user": "secret"}, tls=True).start()
    registry.host_port            # "127.0.0.1:41234"
    registry.ca_pem               # the test CA (TLS registries), PEM text
    registry.mark()               # forget the access log so far
    registry.requests()           # [AccessEntry(method="HEAD", path="/v2/app/manifests/latest", status=200)]
    registry.stop()               # by PID

The registry writes its access log (Apache combined format) on stdout: that file is what
`requests()` parses, so tests can count HEAD vs GET per path.  Its own log goes to
`registry.log`.  `TokenServer` is a small bearer-token service (JWTs signed by a test CA,
as the registry's `auth.token` expects) that records every token request.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import trustme

REGISTRY_BINARY = "/usr/bin/docker-registry"
_ACCESS_RE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) ')


@dataclass(frozen=True, slots=True)
class AccessEntry:
    method: str
    path: str
    status: int


_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _stop_leftovers() -> None:
    """At interpreter exit, stop (by PID) any registry a crashed test left running."""
    for proc in list(_LIVE.values()):
        _stop_pid(proc)
    _LIVE.clear()


atexit.register(_stop_leftovers)


def live_registry_pids() -> list[int]:
    return [pid for pid, proc in _LIVE.items() if proc.poll() is None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_pid(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


class Registry:
    """One distribution registry process with its own config, storage and logs."""

    def __init__(
        self,
        workdir: Path,
        *,
        htpasswd: dict[str, str] | None = None,
        tls: bool = False,
        ca: trustme.CA | None = None,
        client_ca: bool = False,
        token: TokenServer | None = None,
        identities: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> None:
        self.identities = identities
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.htpasswd = dict(htpasswd or {})
        self.tls = tls or client_ca
        self.client_ca = client_ca
        self.token = token
        self.ca = ca if ca is not None else (trustme.CA() if self.tls else None)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.access_log = self.workdir / "access.log"
        self.log = self.workdir / "registry.log"
        self.config = self.workdir / "config.yml"
        self._mark = 0

    # -- addresses and certificates --------------------------------------------------------

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    host = host_port

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_port}"

    @property
    def ca_pem(self) -> str:
        if self.ca is None:
            raise ValueError("not a TLS registry")
        return self.ca.cert_pem.bytes().decode()

    @property
    def ca_file(self) -> Path:
        path = self.workdir / "ca.pem"
        if not path.exists():
            path.write_text(self.ca_pem)
        return path

    def cert_dir(self, base: Path, *, with_client_cert: bool = False) -> Path:
        """Write a certs.d layout `base/<host:port>/ca.crt` (+ client.cert/.key); returns `base`."""
        directory = base / self.host_port
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.crt").write_text(self.ca_pem)
        if with_client_cert:
            self.write_client_cert(directory)
        return base

    def write_client_cert(self, directory: Path, name: str = "client") -> tuple[Path, Path]:
        """A client certificate signed by the test CA: `name.cert` + `name.key` in `directory`."""
        if self.ca is None:
            raise ValueError("not a TLS registry")
        leaf = self.ca.issue_cert("client@example.test", common_name="autoupdated test client")
        cert = directory / f"{name}.cert"
        key = directory / f"{name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    # -- lifecycle -------------------------------------------------------------------------

    def _write_config(self) -> None:
        storage = self.workdir / "storage"
        storage.mkdir(exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: autoupdated-test-secret",
        ]
        if self.tls:
            assert self.ca is not None
            leaf = self.ca.issue_cert(*self.identities)
            cert = self.workdir / "server.crt"
            key = self.workdir / "server.key"
            cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            key.write_bytes(leaf.private_key_pem.bytes())
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
            if self.client_ca:
                lines += ["    clientcas:", f"      - {self.ca_file}"]
        if self.htpasswd:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                    for user, password in self.htpasswd.items()
                )
            )
            lines += ["auth:", "  htpasswd:", "    realm: autoupdated-test", f"    path: {htpasswd}"]
        elif self.token is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token.realm}",
                f"    service: {self.token.service}",
                f"    issuer: {self.token.issuer}",
                f"    rootcertbundle: {self.token.root_bundle}",
            ]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 15.0) -> Registry:
        last_error = ""
        for _attempt in range(3):
            self.port = free_port()
            self._write_config()
            with open(self.access_log, "ab") as out, open(self.log, "ab") as err:
                self.proc = subprocess.Popen(
                    [REGISTRY_BINARY, "serve", str(self.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            _LIVE[self.proc.pid] = self.proc
            try:
                self._wait_ready(timeout)
                self._mark = self.access_log.stat().st_size
                return self
            except RuntimeError as failure:
                last_error = str(failure)
                _stop_pid(self.proc)
                _LIVE.pop(self.proc.pid, None)
                self.proc = None
                if "address already in use" not in last_error:
                    break
        raise RuntimeError(last_error)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        verify = self._verify()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with httpx.Client(verify=verify, timeout=2, trust_env=False) as client:
                    response = client.get(f"{self.url}/v2/")
                if response.status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer /v2/ within {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc)
            _LIVE.pop(self.proc.pid, None)
            self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def __enter__(self) -> Registry:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- access log ------------------------------------------------------------------------

    def mark(self) -> None:
        """Forget the requests so far: `requests()` returns only later ones."""
        self._mark = self.access_log.stat().st_size if self.access_log.exists() else 0

    clear_log = mark

    def requests(self, *, settle: float = 0.2) -> list[AccessEntry]:
        """Requests since the last mark, in order.  Waits `settle` s for the log to be written."""
        if settle:
            time.sleep(settle)
        with open(self.access_log, "rb") as log:
            log.seek(self._mark)
            text = log.read().decode("utf-8", "replace")
        entries = []
        for line in text.splitlines():
            match = _ACCESS_RE.match(line)
            if match:
                entries.append(AccessEntry(match["method"], match["path"], int(match["status"])))
        return entries

    def count(self, method: str, path: str | None = None) -> int:
        return sum(1 for r in self.requests() if r.method == method and (path is None or r.path == path))

    # -- direct HTTP helpers -----------------------------------------------------------------

    def _verify(self) -> ssl.SSLContext | bool:
        if not self.tls:
            return False
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if "127.0.0.1" not in self.identities:
            context.check_hostname = False
        if self.client_ca:
            cert, key = self.write_client_cert(self.workdir, "harness")
            context.load_cert_chain(str(cert), str(key))
        return context

    def http(self, auth: tuple[str, str] | None = None) -> httpx.Client:
        verify = self._verify()
        return httpx.Client(base_url=self.url, verify=verify, auth=auth, timeout=10, trust_env=False)

    def digest_of(self, name: str, tag: str, auth: tuple[str, str] | None = None) -> str:
        """The Docker-Content-Digest the registry stores for name:tag (not logged in mark windows
        unless the caller marks after)."""
        accept = ", ".join(
            [
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ]
        )
        with self.http(auth) as client:
            response = client.head(f"/v2/{name}/manifests/{tag}", headers={"Accept": accept})
            response.raise_for_status()
            return response.headers["Docker-Content-Digest"]

    def delete_tag_target(self, name: str, tag: str, auth: tuple[str, str] | None = None) -> None:
        digest = self.digest_of(name, tag, auth)
        with self.http(auth) as client:
            client.delete(f"/v2/{name}/manifests/{digest}").raise_for_status()


# -- bearer token service ---------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    method: str
    scope: list[str]
    service: str | None
    user: str | None  # the Basic user, if any
    grant_type: str | None = None


@dataclass
class TokenServer:
    """A bearer token service for the registry's `auth.token`: JWT (RS256, x5c) per request.

    `users` maps user → password; anonymous requests get pull access unless `anonymous` is
    False.  `refresh_tokens` maps identity token → user for OAuth2 POST requests.  Every
    request is recorded in `requests`.  `expires_in` is what the JSON answer says.
    """

    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    anonymous: bool = True
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    expires_in: int = 300
    service: str = "autoupdated-test-registry"
    issuer: str = "autoupdated-test-issuer"
    requests: list[TokenRequest] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(key_type=trustme.KeyType.RSA)
        self._leaf = self._ca.issue_cert("token-signer.example.test", key_type=trustme.KeyType.RSA)
        self.root_bundle = self.workdir / "token-root.pem"
        self.root_bundle.write_bytes(self._ca.cert_pem.bytes())
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        self._key = serialization.load_pem_private_key(self._leaf.private_key_pem.bytes(), password=None)
        chain = [x509.load_pem_x509_certificate(blob.bytes()) for blob in self._leaf.cert_chain_pems]
        self._x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def _jwt(self, subject: str, access: list[dict[str, Any]]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self._x5c}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": hashlib.sha256(os.urandom(16)).hexdigest()[:16],
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        assert isinstance(self._key, rsa.RSAPrivateKey)
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            if user is None:
                actions = [a for a in actions if a == "pull"] if self.anonymous else []
            access.append({"type": kind, "name": name, "actions": actions})
        return access

    def start(self) -> TokenServer:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str, params: dict[str, list[str]]) -> None:
                user: str | None = None
                header = self.headers.get("Authorization", "")
                grant_type: str | None = (params.get("grant_type") or [""])[0] or None
                scopes = [s for value in params.get("scope", []) for s in value.split(" ") if s]
                service: str | None = (params.get("service") or [""])[0] or None
                if header.startswith("Basic "):
                    raw = base64.b64decode(header[6:]).decode()
                    name, _, password = raw.partition(":")
                    if server_self.users.get(name) != password:
                        server_self._record(TokenRequest(method, scopes, service, name, grant_type))
                        self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                        return
                    user = name
                elif grant_type == "refresh_token":
                    refresh = (params.get("refresh_token") or [""])[0]
                    user = server_self.refresh_tokens.get(refresh)
                    if user is None:
                        server_self._record(TokenRequest(method, scopes, service, None, grant_type))
                        self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad refresh token"}]})
                        return
                server_self._record(TokenRequest(method, scopes, service, user, grant_type))
                token = server_self._jwt(user or "", server_self._grant(user, scopes))
                with server_self.lock:
                    server_self.issued.append(token)
                key = "access_token" if grant_type == "refresh_token" else "token"
                self._answer(200, {key: token, "expires_in": server_self.expires_in})

            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                self._handle("GET", urllib.parse.parse_qs(query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                params = urllib.parse.parse_qs(body)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                for key, values in query.items():
                    params.setdefault(key, []).extend(values)
                self._handle("POST", params)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _record(self, request: TokenRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def pull_requests(self, scope: str) -> list[TokenRequest]:
        with self.lock:
            return [r for r in self.requests if scope in r.scope]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# -- an in-process fake registry for fault injection (httpx.MockTransport) ---------------------

FAKE_HOST = "registry.test"
FAKE_REALM = "https://auth.test/token"
FAKE_SERVICE = "registry.test"


@dataclass
class FakeCall:
    method: str
    url: str
    authorization: str | None
    accept: str | None

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path


class FakeRegistry:
    """Serves manifests for `registry.test` (and a token service at auth.test) in-process.

    * `auth`: None, "basic" or "bearer"; `user`/`password` are the valid credentials;
      `refresh_token` the valid identity token.
    * `put(repo, ref, body, media_type)` stores a manifest under a tag and under its digest.
    * `digest_header=False` drops Docker-Content-Digest; `lie_on_get=True` serves other bytes.
    * `override[(method, path)] = callable(request) -> httpx.Response` injects any fault.
    * `delay` (s) before each manifest answer, `in_flight`/`max_in_flight` track concurrency.
    * `calls` lists manifest calls, `token_calls` token calls, with their Authorization header.
    """

    def __init__(
        self,
        *,
        auth: str | None = None,
        user: str = "user",
        password: str = "fake-Pa55word-secret",
        refresh_token: str = "fake-refresh-token-secret",
        expires_in: int | None = 300,
        token_prefix: str = "fake-bearer-token-secret",
    ) -> None:
        self.auth = auth
        self.user = user
        self.password = password
        self.refresh_token = refresh_token
        self.expires_in = expires_in
        self.token_prefix = token_prefix
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.digest_header = True
        self.lie_on_get = False
        self.override: dict[tuple[str, str], Any] = {}
        self.delay = 0.0
        self.token_delay = 0.0
        self.calls: list[FakeCall] = []
        self.token_calls: list[httpx.Request] = []
        self.tokens: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_https = False  # simulate a plain-HTTP server: TLS connections fail
        self.tag_lists: dict[str, list[str]] = {}  # repo -> tags served by /v2/<repo>/tags/list (paginated)

    def put(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.manifests[(repo, ref)] = (body, media_type)
        self.manifests[(repo, digest)] = (body, media_type)
        return digest

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _challenge(self, repo: str) -> str:
        if self.auth == "basic":
            return 'Basic realm="fake"'
        return f'Bearer realm="{FAKE_REALM}",service="{FAKE_SERVICE}",scope="repository:{repo}:pull"'

    def _authorized(self, header: str | None) -> bool:
        if self.auth is None:
            return True
        if header is None:
            return False
        if self.auth == "basic":
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return header == f"Basic {expected}"
        return header.startswith("Bearer ") and header[7:] in self.tokens

    async def _token(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        self.token_calls.append(request)
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if request.method == "POST":
            form = urllib.parse.parse_qs(request.content.decode())
            if form.get("refresh_token") != [self.refresh_token] or form.get("grant_type") != ["refresh_token"]:
                return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "bad refresh"}]})
        else:
            header = request.headers.get("Authorization")
            if header is not None:
                expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
                if header != f"Basic {expected}":
                    return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "bad creds"}]})
        token = f"{self.token_prefix}-{len(self.tokens)}"
        self.tokens.append(token)
        doc: dict[str, Any] = {"access_token" if request.method == "POST" else "token": token}
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        return httpx.Response(200, json=doc)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        url = request.url
        if url.host == "auth.test":
            return await self._token(request)
        if self.fail_https and url.scheme == "https":
            cause = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number", request=request) from cause
        self.calls.append(
            FakeCall(request.method, str(url), request.headers.get("Authorization"), request.headers.get("Accept"))
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            override = self.override.get((request.method, url.path)) or self.override.get(("*", url.path))
            if override is not None:
                result = override(request)
                if not isinstance(result, httpx.Response):
                    result = await result
                assert isinstance(result, httpx.Response)
                return result
            tags = re.fullmatch(r"/v2/(?P<repo>.+)/tags/list", url.path)
            if tags is not None:
                return self._tags(request, tags["repo"])
            match = re.fullmatch(r"/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)", url.path)
            if match is None:
                return httpx.Response(404)
            repo, ref = match["repo"], match["ref"]
            if not self._authorized(request.headers.get("Authorization")):
                body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
                return httpx.Response(401, json=body, headers={"WWW-Authenticate": self._challenge(repo)})
            stored = self.manifests.get((repo, ref))
            if stored is None:
                detail = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
                return httpx.Response(404, json=detail if request.method == "GET" else None)
            body_bytes, media_type = stored
            headers = {"Content-Type": media_type}
            if self.digest_header:
                headers["Docker-Content-Digest"] = "sha256:" + hashlib.sha256(body_bytes).hexdigest()
            if request.method == "HEAD":
                headers["Content-Length"] = str(len(body_bytes))
                return httpx.Response(200, headers=headers)
            if self.lie_on_get:
                body_bytes = body_bytes.replace(b"}", b" }", 1)
            return httpx.Response(200, headers=headers, content=body_bytes)
        finally:
            self.in_flight -= 1

    def count(self, method: str, path: str | None = None) -> int:
        return sum(1 for c in self.calls if c.method == method and (path is None or c.path == path))

    def _tags(self, request: httpx.Request, repo: str) -> httpx.Response:
        """distribution's tags/list: sorted, `n` per page after `last`, a Link to the next page."""
        if not self._authorized(request.headers.get("Authorization")):
            body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            return httpx.Response(401, json=body, headers={"WWW-Authenticate": self._challenge(repo)})
        if repo not in self.tag_lists:
            unknown = {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]}
            return httpx.Response(404, json=unknown)
        every = sorted(self.tag_lists[repo])
        n = int(request.url.params.get("n", "1000"))
        last = request.url.params.get("last")
        rest = [tag for tag in every if last is None or tag > last]
        page = rest[:n]
        headers = {}
        if len(rest) > n:
            headers["Link"] = f'</v2/{repo}/tags/list?n={n}&last={page[-1]}>; rel="next"'
        return httpx.Response(200, json={"name": repo, "tags": page}, headers=headers)

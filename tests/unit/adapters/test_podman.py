"""The podman adapter against a real podman REST service on the host (no machine needed)."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading

import pytest

from autoupdated.adapters.podman import Podman
from autoupdated.errors import PodmanError
from autoupdated.model import Credentials
from tests.harness.images import ImageBuilder
from tests.harness.podman_host import PodmanService

pytestmark = pytest.mark.machine


def test_container_state_matches_names_exactly_never_id_prefixes(
    podman_host: PodmanService, podman_service: str, image_builder: ImageBuilder
) -> None:
    """While a unit has removed its container, a name like "c142" must not find another
    container whose ID starts with c142 (podman's API resolves names, then ID prefixes)."""
    ref = image_builder.build("healthy", "adapter-state")
    archive = image_builder.save(ref, image_builder.workdir / "adapter-state.tar")
    podman_host.podman("load", "-q", "-i", str(archive))
    podman_host.podman("run", "-d", "--name", "adapter-state", ref, "sleep", "600")
    try:
        full_id = podman_host.podman("inspect", "--format", "{{.Id}}", "adapter-state").stdout.strip()
        api = Podman(podman_service)
        state = asyncio.run(api.container_state("adapter-state"))
        assert state is not None and state.id == full_id and state.running and state.has_healthcheck
        # podman itself finds the container by an ID prefix; the adapter, asked for that as a name, does not
        prefix = full_id[:8]
        assert podman_host.podman("inspect", "--format", "{{.Name}}", prefix).stdout.strip() == "adapter-state"
        assert asyncio.run(api.container_state(prefix)) is None
        assert asyncio.run(api.container_state("adapter-missing")) is None
    finally:
        podman_host.podman("rm", "-f", "-t", "0", "adapter-state", check=False)


class _EchoingRegistry(http.server.BaseHTTPRequestHandler):
    """Asks for Basic auth, then answers every manifest request with an error that repeats the
    credentials it was sent (as some registries and proxies do in their error bodies)."""

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="echo"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/v2/":
            self._json(200, {})
            return
        decoded = base64.b64decode(auth.removeprefix("Basic ")).decode(errors="replace")
        message = f"no such manifest for {decoded} (you sent {auth})"
        self._json(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": message}]})

    do_HEAD = do_GET

    def _json(self, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_pull_error_podman_relays_has_the_credentials_scrubbed_out(
    podman_host: PodmanService, podman_service: str
) -> None:
    """podman relays the registry's error text; a registry that echoes what it was sent must not
    get the password (plain or base64) into the error the engine, journal and history see."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host_port = f"127.0.0.1:{server.server_address[1]}"
    password = "correct-horse-battery-staple"
    raw = base64.b64encode(f"alice:{password}".encode()).decode()
    try:
        api = Podman(podman_service)
        with pytest.raises(PodmanError) as caught:
            credentials = Credentials("alice", password)
            asyncio.run(api.pull(f"{host_port}/app:latest", credentials=credentials, tls_verify=False))
        text = str(caught.value)
        assert "<redacted>" in text, f"the registry's echo did not reach the error at all: {text}"
        assert password not in text and raw not in text and raw.rstrip("=") not in text
    finally:
        server.shutdown()
        server.server_close()

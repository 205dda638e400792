"""Pytest fixtures for real distribution registries (a plugin listed in tests/conftest.py).

* `registry`: plain HTTP, no auth (module scope: tests push under their own names).
* `auth_registry`: htpasswd with `AUTH_USER` / `AUTH_PASSWORD`.
* `tls_registry`: HTTPS with a test CA (`registry.ca_pem`).
* `token_setup`: a registry with bearer-token auth and its `TokenServer`.

Each is stopped by PID at teardown.  Tests needing them are marked `registry` and skip when
`docker-registry` or `skopeo` is missing (outside CI).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.registry import REGISTRY_BINARY, Registry, TokenServer

AUTH_USER = "autoupdater"
AUTH_PASSWORD = "s3cr3t-Pa55word-never-printed"
TOKEN_USER = "tokenuser"
TOKEN_PASSWORD = "t0ken-pa55-never-printed"
IDENTITY_TOKEN = "identity-t0ken-never-printed"


def _require_tools() -> None:
    missing = [tool for tool in (REGISTRY_BINARY, "skopeo") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"missing {', '.join(missing)} (apt-get install docker-registry skopeo)")
        pytest.skip(f"needs {', '.join(missing)}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _require_tools()
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _require_tools()
    reg = Registry(tmp_path_factory.mktemp("auth-registry"), htpasswd={AUTH_USER: AUTH_PASSWORD}).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _require_tools()
    reg = Registry(tmp_path_factory.mktemp("tls-registry"), tls=True).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, TokenServer]]:
    _require_tools()
    base: Path = tmp_path_factory.mktemp("token-registry")
    server = TokenServer(
        base / "token", users={TOKEN_USER: TOKEN_PASSWORD}, refresh_tokens={IDENTITY_TOKEN: TOKEN_USER}
    ).start()
    reg = Registry(base / "registry", token=server)
    try:
        reg.start()
        yield reg, server
    finally:
        reg.stop()
        server.stop()

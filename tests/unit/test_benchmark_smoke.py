"""The benchmark's pieces work: the latency proxy delays and forwards faithfully, the access-log
and import-time parsers read what they should, and a tiny run of `python -m benchmarks.run`
(two containers over one image, scenarios a and b) produces figures and leaves nothing behind.

The proxy tests are quick and need nothing.  The tiny run needs what the machine tests need
(root, systemd-nspawn, podman, docker-registry) and takes about half a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import measure
from benchmarks.environment import client_of, manifest_reference, path_class, token_scope
from benchmarks.proxy import LatencyProxy, ProxyError, parse_request_head
from tests.harness import procs
from tests.harness import registry as registry_mod
from tests.harness.registry import AccessEntry

# -- the latency proxy ----------------------------------------------------------------------


class _Echo:
    """A TCP server on loopback in a thread: answers each chunk with the same bytes, and sends
    its whole input back at EOF if asked (to check half-close and large transfers)."""

    def __init__(self, *, collect: bool = False) -> None:
        self.collect = collect
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received = bytearray()
            while data := await reader.read(65536):
                if self.collect:
                    received += data
                else:
                    writer.write(data)
                    await writer.drain()
            if self.collect:
                writer.write(bytes(received))
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()

    def __enter__(self) -> _Echo:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


async def _round_trips(port: int, payload: bytes, times: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    took = []
    for _ in range(times):
        t0 = time.monotonic()
        writer.write(payload)
        await writer.drain()
        echoed = await reader.readexactly(len(payload))
        took.append(time.monotonic() - t0)
        assert echoed == payload
    writer.close()
    await writer.wait_closed()
    return took


def test_proxy_adds_the_delay_to_each_request_and_forwards_the_bytes() -> None:
    with _Echo() as echo, LatencyProxy("127.0.0.1", echo.port, delay=0.05) as proxy:
        request = b"HEAD /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\nUser-Agent: autoupdated/0.1 t\r\n\r\n"
        took = asyncio.run(_round_trips(proxy.port, request, 3))
        assert all(0.05 <= t < 0.5 for t in took), took  # each request on the kept-alive connection
        direct = asyncio.run(_round_trips(echo.port, request, 3))
        assert max(direct) < 0.05
        stats = proxy.stats()
        assert stats["connections"] == 1 and stats["chunks"] == 3 and stats["bytes_up"] == 3 * len(request)
        seen = proxy.requests()
        assert [(r.method, r.path, r.user_agent) for r in seen] == [
            ("HEAD", "/v2/app/manifests/latest", "autoupdated/0.1 t")
        ] * 3
        assert len({r.connection for r in seen}) == 1
    assert not proxy.running


def test_proxy_chunks_are_delayed_from_their_own_arrival_not_one_after_another() -> None:
    async def burst(port: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        for i in range(10):
            writer.write(f"chunk{i};".encode())
            await writer.drain()
            await asyncio.sleep(0.005)
        got = b""
        while got.count(b";") < 10:
            got += await reader.read(1024)
        writer.close()
        return time.monotonic() - t0

    with _Echo() as echo, LatencyProxy("127.0.0.1", echo.port, delay=0.1) as proxy:
        took = asyncio.run(burst(proxy.port))
    assert 0.1 <= took < 0.4, took  # 10 chunks, not 10 x 100 ms


def test_proxy_carries_large_transfers_and_half_close_intact() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)

    async def send_all(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        answer = await reader.read()
        writer.close()
        return answer

    with _Echo(collect=True) as echo, LatencyProxy("127.0.0.1", echo.port, delay=0.001) as proxy:
        assert asyncio.run(send_all(proxy.port)) == payload
        assert proxy.stats()["bytes_down"] == len(payload)


def test_proxy_stays_on_loopback_and_stops_by_itself() -> None:
    with pytest.raises(ProxyError, match="loopback"):
        LatencyProxy("10.0.0.1", 5000)
    with pytest.raises(ProxyError, match="loopback"):
        LatencyProxy("127.0.0.1", 5000, listen_host="0.0.0.0")
    with _Echo() as echo:
        proxy = LatencyProxy("127.0.0.1", echo.port, delay=0.0, max_lifetime=0.3).start()
        deadline = time.monotonic() + 5
        while proxy.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proxy.running
        proxy.stop()


def test_proxy_refused_upstream_closes_the_client() -> None:
    port = procs.free_port()  # nothing listens there

    async def attempt(proxy_port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data

    with LatencyProxy("127.0.0.1", port, delay=0.0) as proxy:
        assert asyncio.run(attempt(proxy.port)) == b""
        assert proxy.stats()["upstream_failures"] == 1


# -- parsers --------------------------------------------------------------------------------


def test_request_classification() -> None:
    assert path_class(AccessEntry("GET", "/v2/", 401)) == "ping GET"
    assert path_class(AccessEntry("HEAD", "/v2/bench/app000/manifests/latest", 200)) == "manifest HEAD"
    assert path_class(AccessEntry("GET", "/v2/bench/app000/blobs/sha256:abc", 200)) == "blob GET"
    assert manifest_reference(AccessEntry("HEAD", "/v2/bench/app000/manifests/latest", 200)) == "bench/app000:latest"
    assert manifest_reference(AccessEntry("GET", "/v2/", 200)) is None
    assert parse_request_head(b"GET /token?scope=x HTTP/1.1\r\nuser-agent: containers/5.23\r\n\r\n") == (
        "GET",
        "/token?scope=x",
        "containers/5.23",
    )
    assert parse_request_head(b"\x16\x03\x01 TLS hello") is None
    assert client_of("autoupdated/0.1 (podman auto-update compatible)") == "autoupdated"
    assert client_of("containers/5.23.1 (github.com/containers/image)") == "podman"
    assert token_scope("/token?service=s&scope=repository%3Abench%2Fapp000%3Apull") == "repository:bench/app000:pull"


def test_importtime_parser() -> None:
    text = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |   _io\n"
        "import time:      2000 |       5000 | asyncio\n"
        "import time:       300 |        300 |     asyncio.events\n"
        "import time:      1000 |       1000 | httpx\n"
    )
    parsed = measure.parse_importtime(text)
    assert parsed["total_ms"] == 3.4
    assert parsed["modules"] == 4
    assert parsed["top_level_ms"] == {"asyncio": 5.0, "httpx": 1.0}


# -- a tiny run of the whole benchmark --------------------------------------------------------


def _missing_tools() -> list[str]:
    tools = ("systemd-nspawn", "nsenter", "podman", "zstd", registry_mod.REGISTRY_BINARY)
    return [tool for tool in tools if shutil.which(tool) is None]


@pytest.fixture
def bench_prerequisites() -> Iterator[None]:
    reason = "needs root" if os.geteuid() != 0 else None
    if reason is None and (missing := _missing_tools()):
        reason = f"needs {', '.join(missing)} (scripts/setup.sh)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the benchmark smoke run {reason}; CI must run it", pytrace=False)
        pytest.skip(reason)
    yield


@pytest.mark.machine
@pytest.mark.registry
def test_tiny_benchmark_run_produces_figures_and_leaves_nothing(bench_prerequisites: None, tmp_path: Path) -> None:
    from benchmarks import run

    before_pids = set(procs.live_pids())
    before_registries = set(registry_mod.live_registry_pids())
    output = tmp_path / "results.json"
    printed: list[str] = []
    t0 = time.monotonic()
    code = run.main(
        [
            "--quick",
            "--images=1",
            "--per-image=2",
            "--scenario=a,b",
            "--platform=bookworm",   # one platform: the tiny run's shape and time bound
            f"--output={output}",
        ],
        write=printed.append,
    )
    took = time.monotonic() - t0
    assert code == 0
    results = json.loads(output.read_text())
    a, b = results["scenarios"]["a"], results["scenarios"]["b"]
    for sc in (a, b):
        assert sc["containers"] == 2 and sc["images"] == 1
        assert {r["tool"] for r in sc["runs"]} == {"podman", "autoupdated"}
        assert all(r["final_ok"] for r in sc["runs"]), sc["runs"]
        summary = sc["summary"]
        assert summary["podman_median_s"] > 0 and summary["autoupdated_median_s"] > 0
        assert summary["ratio_autoupdated_over_podman"] == pytest.approx(
            summary["autoupdated_median_s"] / summary["podman_median_s"], rel=0.01
        )
    # the figures the benchmark exists for
    assert a["summary"]["one_head_per_reference"] and a["summary"]["no_manifest_get"]
    assert a["traffic_median"]["podman"]["manifest GET"] == 2  # podman: one GET per container
    assert a["summary"]["max_token_requests_per_scope_autoupdated"] == 1
    assert b["restarted_median"] == {"podman": 2, "autoupdated": 2}
    report = "\n".join(printed)
    assert "scenario a" in report and "scenario b" in report and "speedup" in report
    assert results["report"] == report.splitlines()
    # nothing left behind: machine, registry, token service, proxies
    assert set(procs.live_pids()) <= before_pids
    assert set(registry_mod.live_registry_pids()) <= before_registries
    assert not [t for t in threading.enumerate() if t.name.startswith("latency-proxy")]
    assert took < 120, f"the tiny run took {took:.0f} s"

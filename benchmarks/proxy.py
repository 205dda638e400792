"""A small TCP proxy on loopback that adds latency: a stand-in for a registry far away.

There is no netem on these machines, so the benchmark puts this in front of the registry (and
its token service).  Every chunk the client sends is held for `delay` seconds after it arrived
and then forwarded; an HTTP request is one chunk, so each request costs one extra `delay`, as a
round trip to a remote registry would.  Answers flow back at once.  Chunks are delayed from
their own arrival (not one after another), so a pipelined burst is not delayed cumulatively.

Bounded: at most `max_connections` connections at once (more wait in the listen backlog),
at most `queue_chunks` chunks of `chunk_size` held per connection (the client is then paced
by TCP), and the whole proxy stops by itself after `max_lifetime` seconds.  It listens on and
forwards to loopback addresses only.

    proxy = LatencyProxy("127.0.0.1", 5000, delay=0.030).start()
    proxy.host_port          # "127.0.0.1:41235"
    proxy.stats()            # {"connections": 3, "chunks": 12, "bytes_up": ..., "bytes_down": ...}
    proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
import time
from dataclasses import dataclass


class ProxyError(RuntimeError):
    """The proxy could not start (bad address, or the loop did not come up)."""


_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"OPTIONS ")
MAX_RECORDED = 100_000


@dataclass(frozen=True)
class SeenRequest:
    """An HTTP request head seen going upstream (plain HTTP only): when, on which connection."""

    time: float
    connection: int
    method: str
    path: str
    user_agent: str


def parse_request_head(data: bytes) -> tuple[str, str, str] | None:
    """(method, path, user agent) when `data` starts with an HTTP/1 request line, else None."""
    if not data.startswith(_METHODS):
        return None
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1", "replace")
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 3:
        return None
    agent = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "user-agent":
            agent = value.strip()
            break
    return parts[0], parts[1], agent


@dataclass
class ProxyStats:
    connections: int = 0
    active: int = 0
    max_active: int = 0
    chunks: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    upstream_failures: int = 0


def _require_loopback(host: str) -> None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ProxyError(f"the latency proxy takes IP addresses only, not {host!r}") from None
    if not address.is_loopback:
        raise ProxyError(f"the latency proxy stays on loopback; {host} is not a loopback address")


class LatencyProxy:
    """Forwards 127.0.0.1:port -> target, delaying each client->server chunk by `delay` s."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        delay: float = 0.030,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = 256,
        queue_chunks: int = 64,
        chunk_size: int = 64 * 1024,
        max_lifetime: float = 6 * 3600.0,
        linger: float = 30.0,
        record_requests: bool = True,
    ) -> None:
        _require_loopback(target_host)
        _require_loopback(listen_host)
        if delay < 0:
            raise ProxyError("delay must not be negative")
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = port
        self.delay = delay
        self.max_connections = max_connections
        self.queue_chunks = queue_chunks
        self.chunk_size = chunk_size
        self.max_lifetime = max_lifetime
        self.linger = linger
        self.record_requests = record_requests
        self._seen: list[SeenRequest] = []
        self._connection_ids = 0
        self._stats = ProxyStats()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def host_port(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(vars(self._stats))

    def reset_stats(self) -> None:
        """Zero the counters and forget the requests seen so far."""
        with self._lock:
            active, max_active = self._stats.active, self._stats.active
            self._stats = ProxyStats(active=active, max_active=max_active)
            self._seen = []

    def requests(self) -> list[SeenRequest]:
        """HTTP request heads forwarded since the last reset (monotonic times), oldest first."""
        with self._lock:
            return list(self._seen)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> LatencyProxy:
        if self._thread is not None:
            raise ProxyError("already started")
        self._thread = threading.Thread(target=self._main, name=f"latency-proxy-{self.target[1]}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ProxyError("the latency proxy did not start listening in time")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise ProxyError(f"the latency proxy could not start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, close every connection, end the thread (idempotent)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise ProxyError("the latency proxy thread did not stop")
        self._thread = None

    def __enter__(self) -> LatencyProxy:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # reported to start(), or lost when the process exits
            self._error = self._error or err
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        slots = asyncio.Semaphore(self.max_connections)
        handlers: set[asyncio.Task[None]] = set()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                async with slots:
                    await self._handle(reader, writer)
            finally:
                handlers.discard(task)

        try:
            server = await asyncio.start_server(on_client, self.listen_host, self.port, backlog=1024)
        except OSError as err:
            self._error = err
            self._ready.set()
            return
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.max_lifetime)
        finally:
            server.close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

    # -- one connection ------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)
            self._stats.max_active = max(self._stats.max_active, self._stats.active)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._count(connections=1, active=1)
        with self._lock:
            self._connection_ids += 1
            connection = self._connection_ids
        try:
            try:
                server_r, server_w = await asyncio.open_connection(*self.target)
            except OSError:
                self._count(upstream_failures=1)
                return
            try:
                up = asyncio.ensure_future(self._upstream(client_r, server_w, connection))
                down = asyncio.ensure_future(self._downstream(server_r, client_w))
                try:
                    done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
                    if pending and not any(task.exception() for task in done):
                        # One side ended cleanly and half-closed the other: let the rest of the
                        # conversation finish, for a bounded time.
                        await asyncio.wait(pending, timeout=self.linger)
                finally:
                    for task in (up, down):
                        task.cancel()
                    await asyncio.gather(up, down, return_exceptions=True)
            finally:
                server_w.close()
                with contextlib.suppress(Exception):
                    await server_w.wait_closed()
        finally:
            client_w.close()
            with contextlib.suppress(Exception):
                await client_w.wait_closed()
            self._count(active=-1)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: int) -> None:
        """Client -> server: each chunk waits until `delay` after its own arrival."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(self.queue_chunks)
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                while data := await reader.read(self.chunk_size):
                    if self.record_requests and (head := parse_request_head(data)):
                        seen = SeenRequest(time.monotonic(), connection, *head)
                        with self._lock:
                            if len(self._seen) < MAX_RECORDED:
                                self._seen.append(seen)
                    await queue.put((loop.time() + self.delay, data))
            finally:
                await queue.put((loop.time() + self.delay, b""))

        reading = asyncio.ensure_future(read())
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    break
                writer.write(data)
                await writer.drain()
                self._count(chunks=1, bytes_up=len(data))
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server -> client, at once."""
        while data := await reader.read(self.chunk_size):
            writer.write(data)
            await writer.drain()
            self._count(bytes_down=len(data))
        if writer.can_write_eof():
            writer.write_eof()


def _main() -> None:  # pragma: no cover - manual use
    import argparse

    parser = argparse.ArgumentParser(description="TCP latency proxy on loopback")
    parser.add_argument("target", help="HOST:PORT to forward to (loopback)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.030, help="seconds added to each client chunk")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="stop after this many seconds")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    proxy = LatencyProxy(host, int(port), delay=args.delay, port=args.port, max_lifetime=args.lifetime).start()
    print(f"listening on {proxy.host_port} -> {args.target}, +{args.delay * 1000:g} ms", flush=True)
    try:
        while proxy.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()


if __name__ == "__main__":  # pragma: no cover
    _main()

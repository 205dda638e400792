"""The one connection to systemd over D-Bus: restart jobs and unit states.

systemd answers `RestartUnit` with a job path at once; whether the restart worked is only known
from the `JobRemoved` signal for that job.  The signal can arrive before the method reply, so
the filter is in place before any call and early results are kept until someone asks.
Every jeepney or socket error becomes BusUnavailable (connect) or BusCallError (a call), here.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

from jeepney import DBusErrorResponse
from jeepney.io.asyncio import DBusRouter, open_dbus_connection
from jeepney.low_level import Message, MessageType

from autoupdated.adapters.systemd import messages
from autoupdated.errors import BusCallError, BusUnavailable
from autoupdated.model import UnitState


class SystemdBus:
    """One D-Bus connection per run; restarts and state reads may run concurrently on it."""

    def __init__(self, bus: str | None = None) -> None:
        self.bus = bus or messages.default_bus()
        self._router: DBusRouter | None = None
        self._connection: Any = None
        self._filter: Any = None
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._early: dict[str, str] = {}
        self._signal_task: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()

    async def __aenter__(self) -> SystemdBus:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        async with self._connecting:
            if self._router is None:
                await self._open()

    async def _open(self) -> None:
        address = messages.bus_address(self.bus)
        try:
            self._connection = await open_dbus_connection(address)
        except (OSError, ValueError, KeyError, TimeoutError) as err:
            raise BusUnavailable(
                f"cannot connect to the {self.bus} D-Bus at {address}: {err}; no unit can be restarted "
                "(is dbus running? rootless users need a session bus: `loginctl enable-linger`)"
            ) from None
        router = DBusRouter(self._connection)
        # Unbounded: with many restarts in flight no JobRemoved signal may be dropped.
        signals: asyncio.Queue[Message] = asyncio.Queue()
        self._filter = router.filter(messages.JOB_REMOVED_LOCAL, queue=signals)
        self._router = router
        try:
            await self._call(messages.add_match_job_removed())
            await self._call(messages.subscribe())
        except BusCallError as err:
            await self.close()
            raise BusUnavailable(f"the {self.bus} D-Bus at {address} refused to send job signals: {err}") from None
        self._signal_task = asyncio.get_running_loop().create_task(self._dispatch(signals))

    async def _call(self, message: Message) -> tuple[Any, ...]:
        if self._router is None:
            await self.connect()
        assert self._router is not None
        try:
            reply = await self._router.send_and_get_reply(message)
        except (OSError, ConnectionError, EOFError) as err:
            raise BusCallError(f"D-Bus connection lost: {err}") from None
        if reply.header.message_type == MessageType.error:
            refused = DBusErrorResponse(reply)
            raise BusCallError(" ".join(str(part) for part in (refused.name, *refused.data)))
        return tuple(reply.body)

    async def _dispatch(self, signals: asyncio.Queue[Message]) -> None:
        """Route each JobRemoved to whoever waits for that job."""
        while True:
            job, _unit, result = messages.job_removed(tuple((await signals.get()).body))
            waiter = self._waiting.pop(job, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
            else:
                self._early[job] = result

    # -- jobs -------------------------------------------------------------------------------

    async def reset_failed(self, unit: str) -> None:
        await self._call(messages.reset_failed(unit))

    async def restart(self, unit: str) -> str:
        """Queue a restart job (mode "replace"); returns the job's path."""
        (job,) = await self._call(messages.restart_unit(unit))
        return str(job)

    async def start(self, unit: str) -> str:
        """Queue a start job (mode "replace"); returns the job's path (a pending one it joined)."""
        (job,) = await self._call(messages.start_unit(unit))
        return str(job)

    async def job_result(self, job: str, timeout: float) -> str:  # noqa: ASYNC109 - a deadline per job
        """The job's result (`done`, `failed`, `canceled`, ...); TimeoutError after `timeout` s."""
        if job in self._early:
            return self._early.pop(job)
        waiter = self._waiting.setdefault(job, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        finally:
            self._waiting.pop(job, None)

    # -- states -----------------------------------------------------------------------------

    async def state(self, unit: str) -> UnitState:
        """The unit's state now."""
        (path,) = await self._call(messages.load_unit(unit))
        (props,) = await self._call(messages.get_all(str(path), messages.UNIT_IFACE))
        service = None
        if messages.wants_service_props(unit, props):
            with contextlib.suppress(BusCallError):
                (service,) = await self._call(messages.get_all(str(path), messages.SERVICE_IFACE))
        return messages.unit_state(unit, props, service)

    async def close(self) -> None:
        if self._signal_task is not None:
            self._signal_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._signal_task
            self._signal_task = None
        if self._router is not None:
            with contextlib.suppress(Exception):
                self._filter.close()
            with contextlib.suppress(Exception):
                await self._router.__aexit__(None, None, None)
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._router = None

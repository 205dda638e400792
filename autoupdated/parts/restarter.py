"""Part 4 of the engine: restart a systemd unit over D-Bus and wait for the job's result.

systemd answers `RestartUnit` with a job path at once; whether the restart
worked is only known from the `JobRemoved` signal for that job (`done`, or
`failed`, `timeout`, `canceled`, `dependency`, `skipped`).  The signal can
arrive before the method reply, so the filter is in place before the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from types import TracebackType
from typing import Any

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"


class RestartError(Exception):
    """A restart job did not end in `done`, or could not be started or awaited."""

    def __init__(self, unit: str, message: str, result: str = "") -> None:
        super().__init__(message)
        self.unit = unit
        self.result = result


class BusUnavailable(Exception):
    """The bus cannot be reached: no unit can be restarted in this run."""


def default_bus() -> str:
    """`system` for root (podman's units live there), `session` for rootless users."""
    return "system" if os.geteuid() == 0 else "session"


def bus_address(bus: str) -> str:
    """The D-Bus address to connect to, honouring DBUS_*_BUS_ADDRESS like every D-Bus client."""
    if bus == "session":
        if address := os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            return address
        runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
        return f"unix:path={runtime_dir}/bus"
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/run/dbus/system_bus_socket"


class UnitRestarter:
    """One D-Bus connection per run; restarts may run concurrently on it."""

    def __init__(self, bus: str | None = None, timeout: float = 300.0) -> None:
        self.bus = bus or default_bus()
        self.timeout = timeout
        self._router: Any = None
        self._router_cm: Any = None
        self._queues: dict[str, asyncio.Queue[str]] = {}
        self._early: dict[str, str] = {}
        self._signal_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UnitRestarter:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        from jeepney import MatchRule, message_bus, new_method_call
        from jeepney.io.asyncio import DBusRouter, open_dbus_connection

        address = bus_address(self.bus)
        try:
            connection = await open_dbus_connection(address)
        except (OSError, ValueError, KeyError, TimeoutError) as err:
            raise BusUnavailable(
                f"cannot connect to the {self.bus} D-Bus at {address}: {err}; no unit can be restarted "
                "(is dbus running? rootless users need a session bus: `loginctl enable-linger`)"
            ) from None
        self._connection = connection
        self._router = DBusRouter(connection)
        # The bus resolves the well-known sender name; locally, signals carry systemd's unique
        # name (":1.x"), so the local filter must not match on the sender.
        bus_rule = MatchRule(type="signal", sender=SYSTEMD, interface=MANAGER, member="JobRemoved", path=SYSTEMD_PATH)
        local_rule = MatchRule(type="signal", interface=MANAGER, member="JobRemoved", path=SYSTEMD_PATH)
        # Unbounded: with many restarts in flight no JobRemoved signal may be dropped.
        self._signals: asyncio.Queue[Any] = asyncio.Queue()
        self._filter = self._router.filter(local_rule, queue=self._signals)
        try:
            add_match = new_method_call(message_bus, "AddMatch", "s", (bus_rule.serialise(),))
            await self._call(add_match)
            # Subscribe makes systemd emit JobRemoved to us at all.
            await self._call(new_method_call(self._manager(), "Subscribe"))
        except Exception:
            await self.close()
            raise
        self._signal_task = asyncio.get_running_loop().create_task(self._dispatch())

    def _manager(self) -> Any:
        from jeepney import DBusAddress

        return DBusAddress(SYSTEMD_PATH, bus_name=SYSTEMD, interface=MANAGER)

    async def _call(self, message: Any) -> Any:
        from jeepney import DBusErrorResponse
        from jeepney.low_level import MessageType

        reply = await self._router.send_and_get_reply(message)
        if reply.header.message_type == MessageType.error:
            raise DBusErrorResponse(reply)
        return reply

    async def _dispatch(self) -> None:
        """Route each JobRemoved(id, job, unit, result) to whoever waits for that job."""
        while True:
            signal = await self._signals.get()
            _, job, _, result = signal.body
            queue = self._queues.get(job)
            if queue is not None:
                queue.put_nowait(result)
            else:
                self._early[job] = result

    async def restart(self, unit: str) -> None:
        """Restart `unit` with mode "replace"; returns when systemd reports `done`."""
        from jeepney import DBusErrorResponse, new_method_call

        if self._router is None:
            await self.connect()
        # A deliberate restart (update, rollback, a failed unit's repair) must not be refused
        # because the unit crash-looped into its start limit ("start request repeated too
        # quickly"): clear that first.  It only resets a failed unit's result and the counter.
        with contextlib.suppress(DBusErrorResponse, OSError):  # a lost bus is RestartUnit's to report
            await self._call(new_method_call(self._manager(), "ResetFailedUnit", "s", (unit,)))
        try:
            reply = await self._call(new_method_call(self._manager(), "RestartUnit", "ss", (unit, "replace")))
        except DBusErrorResponse as err:
            detail = " ".join(str(part) for part in (err.name, *err.data))
            raise RestartError(unit, f'restarting systemd unit "{unit}" failed: {detail}') from None
        except (OSError, ConnectionError) as err:
            raise RestartError(unit, f'restarting systemd unit "{unit}" failed: D-Bus connection lost: {err}') from None
        job = reply.body[0]
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._queues[job] = queue
        try:
            if job in self._early:
                result = self._early.pop(job)
            else:
                result = await asyncio.wait_for(queue.get(), self.timeout)
        except TimeoutError:
            raise RestartError(
                unit,
                f'restarting systemd unit "{unit}": no result after {self.timeout:g} s; '
                f"check `systemctl status {unit}` and raise the restart timeout if the service starts slowly",
                result="timeout",
            ) from None
        finally:
            self._queues.pop(job, None)
        if result != "done":
            raise RestartError(
                unit,
                f'error restarting systemd unit "{unit}" expected "done" but received "{result}"; '
                f"see `journalctl -u {unit}`",
                result=result,
            )

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

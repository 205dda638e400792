"""systemd's D-Bus API as plain messages and parsers (sans-IO: nothing here touches a socket).

jeepney builds and parses messages without doing IO; `bus.py` is the one place that sends them.
Keeping the names of systemd's objects and the shape of its answers here means the restarter
and recovery never see a D-Bus detail, and the parsing is tested without a bus.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from jeepney import DBusAddress, MatchRule, Properties, message_bus, new_method_call
from jeepney.low_level import Message

from autoupdated.model import UnitState

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"

MANAGER_ADDRESS = DBusAddress(SYSTEMD_PATH, bus_name=SYSTEMD, interface=MANAGER)
# The bus resolves the well-known sender name; locally, signals carry systemd's unique name
# (":1.x"), so the local filter must not match on the sender.
JOB_REMOVED_BUS = MatchRule(type="signal", sender=SYSTEMD, interface=MANAGER, member="JobRemoved", path=SYSTEMD_PATH)
JOB_REMOVED_LOCAL = MatchRule(type="signal", interface=MANAGER, member="JobRemoved", path=SYSTEMD_PATH)


def default_bus() -> str:
    """`system` for root (podman's units live there), `session` for rootless users."""
    return "system" if os.geteuid() == 0 else "session"


def bus_address(bus: str, environ: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """The D-Bus address to connect to, honouring DBUS_*_BUS_ADDRESS like every D-Bus client."""
    env = os.environ if environ is None else environ
    if bus == "session":
        if address := env.get("DBUS_SESSION_BUS_ADDRESS"):
            return address
        runtime_dir = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid() if uid is None else uid}"
        return f"unix:path={runtime_dir}/bus"
    return env.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/run/dbus/system_bus_socket"


def add_match_job_removed() -> Message:
    return new_method_call(message_bus, "AddMatch", "s", (JOB_REMOVED_BUS.serialise(),))


def subscribe() -> Message:
    """Makes systemd emit JobRemoved to us at all."""
    return new_method_call(MANAGER_ADDRESS, "Subscribe")


def reset_failed(unit: str) -> Message:
    return new_method_call(MANAGER_ADDRESS, "ResetFailedUnit", "s", (unit,))


def restart_unit(unit: str, mode: str = "replace") -> Message:
    return new_method_call(MANAGER_ADDRESS, "RestartUnit", "ss", (unit, mode))


def start_unit(unit: str, mode: str = "replace") -> Message:
    return new_method_call(MANAGER_ADDRESS, "StartUnit", "ss", (unit, mode))


def load_unit(unit: str) -> Message:
    """LoadUnit: also answers for units systemd has not loaded (GetUnit would fail)."""
    return new_method_call(MANAGER_ADDRESS, "LoadUnit", "s", (unit,))


def get_all(path: str, interface: str) -> Message:
    return Properties(DBusAddress(path, bus_name=SYSTEMD, interface=interface)).get_all()


def job_removed(body: tuple[object, ...]) -> tuple[str, str, str]:
    """JobRemoved(id, job, unit, result) -> (job path, unit, result)."""
    _, job, unit, result = body
    return str(job), str(unit), str(result)


Props = Mapping[str, tuple[str, object]]


def wants_service_props(unit: str, unit_props: Props) -> bool:
    """Result and NRestarts exist only on loaded services."""
    return unit.endswith(".service") and _value(unit_props, "LoadState") == "loaded"


def unit_state(unit: str, unit_props: Props, service_props: Props | None = None) -> UnitState:
    """A UnitState from GetAll's answers (the Unit interface, and the Service one if asked)."""
    job = _value(unit_props, "Job") or (0, "/")
    service = service_props or {}
    job_id = job[0] if isinstance(job, tuple | list) and job else 0
    return UnitState(
        unit=unit,
        load_state=str(_value(unit_props, "LoadState") or ""),
        active_state=str(_value(unit_props, "ActiveState") or ""),
        sub_state=str(_value(unit_props, "SubState") or ""),
        job=int(str(job_id)),
        result=str(_value(service, "Result") or ""),
        n_restarts=int(str(_value(service, "NRestarts") or 0)),
    )


def _value(props: Props, key: str) -> object:
    found = props.get(key)
    return found[1] if found is not None else None

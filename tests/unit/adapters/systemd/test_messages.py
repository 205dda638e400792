"""systemd's D-Bus answers parsed without a bus (adapters/systemd/messages.py)."""

from __future__ import annotations

from autoupdated.adapters.systemd import messages


def props(**values: object) -> dict[str, tuple[str, object]]:
    return {key: ("s", value) for key, value in values.items()}


def test_a_failed_service_with_its_result_and_restart_count() -> None:
    unit = props(LoadState="loaded", ActiveState="failed", SubState="failed", Job=(0, "/"))
    service = props(Result="exit-code", NRestarts=3)
    state = messages.unit_state("web.service", unit, service)
    assert (state.load_state, state.active_state, state.sub_state, state.job) == ("loaded", "failed", "failed", 0)
    assert (state.result, state.n_restarts) == ("exit-code", 3)
    assert state.broken and not state.busy
    assert str(state) == "failed (failed), result exit-code"


def test_a_queued_job_makes_the_unit_busy_a_crash_loop_does_not() -> None:
    queued = messages.unit_state("a.service", props(LoadState="loaded", ActiveState="active", Job=(42, "/job/42")))
    assert queued.job == 42 and queued.busy
    looping = messages.unit_state(
        "b.service", props(LoadState="loaded", ActiveState="activating", SubState="auto-restart", Job=(0, "/"))
    )
    assert looping.crash_looping and looping.broken and not looping.busy
    starting = messages.unit_state("c.service", props(LoadState="loaded", ActiveState="activating", SubState="start"))
    assert starting.busy and not starting.broken


def test_service_properties_are_asked_only_for_loaded_services() -> None:
    loaded = props(LoadState="loaded")
    assert messages.wants_service_props("web.service", loaded)
    assert not messages.wants_service_props("web.socket", loaded)
    assert not messages.wants_service_props("gone.service", props(LoadState="not-found"))


def test_a_missing_property_is_empty_not_an_error() -> None:
    state = messages.unit_state("x.service", {})
    assert (state.load_state, state.active_state, state.job, state.result, state.n_restarts) == ("", "", 0, "", 0)


def test_job_removed_signal_body() -> None:
    assert messages.job_removed((7, "/org/freedesktop/systemd1/job/7", "web.service", "done")) == (
        "/org/freedesktop/systemd1/job/7",
        "web.service",
        "done",
    )


def test_bus_address_honours_the_environment() -> None:
    assert messages.bus_address("system", {}) == "unix:path=/run/dbus/system_bus_socket"
    assert messages.bus_address("system", {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/x"}) == "unix:path=/x"
    assert messages.bus_address("session", {"XDG_RUNTIME_DIR": "/run/user/1000"}) == "unix:path=/run/user/1000/bus"
    assert messages.bus_address("session", {}, uid=1001) == "unix:path=/run/user/1001/bus"
    assert messages.bus_address("session", {"DBUS_SESSION_BUS_ADDRESS": "unix:abstract=s"}) == "unix:abstract=s"

"""journald's native protocol, against a real datagram socket."""

from __future__ import annotations

import socket
from datetime import datetime

from autoupdated.adapters import journal
from tests.harness.sinks import parse_datagram


def test_journal_native_protocol(tmp_path):
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        sink = journal.Journal(path)
        assert sink.send(
            "line one\nline two",
            priority=journal.NOTICE,
            fields={"CONTAINER_NAME": "web", "unit": "container-web.service", "EMPTY": ""},
        )
        fields = parse_datagram(server.recv(65536))
        sink.close()
    finally:
        server.close()
    assert fields == {
        "MESSAGE": "line one\nline two",
        "PRIORITY": "5",
        "SYSLOG_IDENTIFIER": "autoupdated",
        "CONTAINER_NAME": "web",
        "UNIT": "container-web.service",
    }


def test_journal_absent_is_silent(tmp_path):
    assert journal.Journal(tmp_path / "none.sock").send("x") is False


def test_a_run_is_recorded_as_podmans_journald_event_writer_records_a_system_event(tmp_path):
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        journal.PodmanEvents(path).system_event("auto-update")
        fields = parse_datagram(server.recv(65536))
    finally:
        server.close()
    # The fields podman's reader needs (libpod/events/journal_linux.go): its identifier, the
    # type and status, and an RFC 3339 time.
    assert fields["SYSLOG_IDENTIFIER"] == "podman"
    assert (fields["PODMAN_TYPE"], fields["PODMAN_EVENT"], fields["PRIORITY"]) == ("system", "auto-update", "6")
    assert datetime.fromisoformat(fields["PODMAN_TIME"]).tzinfo is not None
    assert fields["MESSAGE"].endswith(" system auto-update")

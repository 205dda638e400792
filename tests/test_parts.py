"""Pure parts: references, policies, the report, the journal's wire format."""

from __future__ import annotations

import json
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoupdated import report
from autoupdated.adapters import journal
from autoupdated.model import ContainerInfo, Credentials, Policy
from autoupdated.parts.policy import PolicyError, lookup_policy, unit_for
from autoupdated.reference import ReferenceError, parse, parse_for_autoupdate


@pytest.mark.parametrize(
    ("raw", "domain", "repository", "tag", "api_host"),
    [
        ("quay.io/org/app:1.2", "quay.io", "org/app", "1.2", "quay.io"),
        ("docker://quay.io/org/app:1", "quay.io", "org/app", "1", "quay.io"),
        ("docker.io/alpine:3", "docker.io", "library/alpine", "3", "registry-1.docker.io"),
        ("127.0.0.1:5000/a/b/c:latest", "127.0.0.1:5000", "a/b/c", "latest", "127.0.0.1:5000"),
        ("localhost/app:v1", "localhost", "app", "v1", "localhost"),
    ],
)
def test_fully_qualified_references(raw, domain, repository, tag, api_host):
    ref = parse_for_autoupdate(raw)
    assert (ref.domain, ref.repository, ref.tag, ref.api_host) == (domain, repository, tag, api_host)


def test_digest_references_keep_the_digest():
    digest = "sha256:" + "0" * 64
    ref = parse_for_autoupdate(f"quay.io/a/b:1@{digest}")
    assert ref.digest == digest and ref.tag == "1"
    assert str(ref) == f"quay.io/a/b:1@{digest}"


@given(st.text(max_size=300))
def test_reference_parser_fails_only_with_its_clear_error(text):
    try:
        ref = parse_for_autoupdate(text)
    except ReferenceError as err:
        assert str(err)
    else:
        assert parse(str(ref)) == ref  # what it accepts round-trips


def test_policy_lookup_texts():
    assert lookup_policy("image") is Policy.REGISTRY
    assert lookup_policy("") is Policy.DISABLED
    with pytest.raises(PolicyError) as err:
        lookup_policy("Registry")
    assert (
        str(err.value)
        == 'invalid auto-update policy "Registry": valid policies are ["disabled" "image" "local" "registry"]'
    )


def test_unit_for_pod_uses_infra_label_only():
    c = ContainerInfo("id", "n", "img", "quay.io/a:1", {"PODMAN_SYSTEMD_UNIT": "container-n.service"}, pod_id="p")
    assert unit_for(c, {"PODMAN_SYSTEMD_UNIT": "pod-p.service"}) == "pod-p.service"
    assert unit_for(c, {}) is None


def test_credentials_never_print_their_secret():
    creds = Credentials("user", "s3cret-pass", "tok-123")
    for text in (repr(creds), str(creds), f"{creds}", f"{[creds]}"):
        assert "s3cret" not in text and "tok-123" not in text


ROWS = [
    report.row("container-web.service", "a" * 64, "web", "quay.io/x/y:1", "registry", "false"),
    report.row("pod-p.service", "b" * 64, "db", "127.0.0.1:5000/db:latest", "local", "rolled back"),
]


def test_table_has_podmans_columns():
    lines = report.render(ROWS).splitlines()
    assert lines[0].split() == ["UNIT", "CONTAINER", "IMAGE", "POLICY", "UPDATED"]
    assert lines[1].split() == ["container-web.service", "aaaaaaaaaaaa", "(web)", "quay.io/x/y:1", "registry", "false"]
    assert lines[2].endswith("local       rolled back")


def test_json_has_podmans_keys():
    data = json.loads(report.render(ROWS, "json"))
    assert list(data[0]) == ["Unit", "Container", "ContainerName", "ContainerID", "Image", "Policy", "Updated"]
    assert data[1]["Container"] == "bbbbbbbbbbbb (db)" and data[1]["Updated"] == "rolled back"


def test_templates():
    assert report.render(ROWS, "{{.Unit}},{{.Updated}}") == "container-web.service,false\npod-p.service,rolled back\n"
    assert report.render(ROWS, "table {{.ContainerName}}\\t{{.Policy}}").splitlines()[0].split() == [
        "CONTAINERNAME",
        "POLICY",
    ]
    with pytest.raises(report.FormatError, match="can't evaluate field Nope"):
        report.render(ROWS, "{{.Nope}}")
    assert report.render([], "") == ""


def decode_journal_datagram(datagram: bytes) -> dict[str, str]:
    """Decode journald's native protocol, both the KEY=value and the binary length form."""
    fields, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", datagram[nl + 1 : nl + 9])
            fields[line.decode()] = datagram[nl + 9 : nl + 9 + size].decode()
            i = nl + 9 + size + 1
    return fields


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
        fields = decode_journal_datagram(server.recv(65536))
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

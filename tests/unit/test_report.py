"""The report: values are data, never template; podman's template behaviour and error texts stay."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autoupdated import report
from autoupdated.cli.daemon import format_run, format_status

HOSTILE_UNIT = "{{.Unit}}{{if}}{{.Nope}}.service"
ROWS = [
    report.row(HOSTILE_UNIT, "a" * 64, "{{.Image}}", "quay.io/x/y:{{.Policy}}", "registry", "true"),
    report.row("container-db.service", "b" * 64, "db", "quay.io/x/db:1", "registry", "false"),
]


def test_a_unit_named_like_a_template_prints_as_itself_in_the_default_table() -> None:
    lines = report.render(ROWS).splitlines()
    assert lines[0].split() == ["UNIT", "CONTAINER", "IMAGE", "POLICY", "UPDATED"]
    assert lines[1].split() == [
        HOSTILE_UNIT,
        "aaaaaaaaaaaa",
        "({{.Image}})",
        "quay.io/x/y:{{.Policy}}",
        "registry",
        "true",
    ]
    assert lines[2].split()[0] == "container-db.service"


def test_a_unit_named_like_a_template_prints_as_itself_in_json_and_templates() -> None:
    data = json.loads(report.render(ROWS, "json"))
    assert data[0]["Unit"] == HOSTILE_UNIT and data[0]["ContainerName"] == "{{.Image}}"
    assert report.render(ROWS, "{{.Unit}}|{{.ContainerName}}") == (
        f"{HOSTILE_UNIT}|{{{{.Image}}}}\ncontainer-db.service|db\n"
    )
    assert report.render(ROWS, "table {{.Unit}}\\t{{.Updated}}").splitlines()[1].split() == [HOSTILE_UNIT, "true"]


def test_a_tab_in_a_value_does_not_make_a_column() -> None:
    rows = [report.row("a\tb.service", "c" * 64, "web", "quay.io/x/y:1", "registry", "false")]
    lines = report.render(rows, "table {{.Unit}}\\t{{.Policy}}").splitlines()
    assert lines[1].startswith("a\tb.service") and lines[1].endswith("registry")
    assert lines[0].index("POLICY") == lines[1].index("registry")


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (
            "{{.Nope}}",
            "template: auto-update: can't evaluate field Nope in type autoUpdateOutput; valid fields are "
            "Unit, Container, ContainerName, ContainerID, Image, Policy, Updated",
        ),
        ("{{.Unit}} {{ if .Unit }}", "template: auto-update: unsupported action {{ if .Unit }}; use {{.Field}}"),
        ("{{.Unit}} {{.Nope}} {{end}}", "template: auto-update: can't evaluate field Nope"),
    ],
)
def test_bad_templates_keep_podmans_error_texts(fmt: str, expected: str) -> None:
    with pytest.raises(report.FormatError) as info:
        report.render(ROWS, fmt)
    assert str(info.value).startswith(expected)


def test_template_behaviours_are_unchanged() -> None:
    assert report.render(ROWS[1:], "{{ .Unit }}\\t{{.Updated}}\\n") == "container-db.service\tfalse\n"
    assert report.render(ROWS[1:], "table") == report.render(ROWS[1:], "")
    assert report.render(ROWS[1:], "{{.Unit") == "{{.Unit\n"  # no closing braces: plain text, as before
    assert report.render([], "{{.Nope}}") == ""  # nothing to execute, nothing to complain about
    assert report.parse_template("a{{.Unit}}b") == ("a", report._Field("Unit"), "b")


def record(unit: str) -> dict[str, Any]:
    return {
        "run": 7,
        "reason": "schedule",
        "started": "2030-01-01T00:00:00+00:00",
        "ok": True,
        "summary": "1 updated",
        "entries": [
            {
                "unit": unit,
                "container_id": "a" * 64,
                "container_name": "web",
                "image": "quay.io/x/y:1",
                "policy": "registry",
                "updated": "true",
            }
        ],
    }


def test_format_run_prints_a_stored_hostile_unit_name() -> None:
    text = format_run(record(HOSTILE_UNIT))
    assert text.splitlines()[0].startswith("Run 7 (schedule), ")
    assert HOSTILE_UNIT in text.splitlines()[-1]


def test_format_status_prints_a_stored_hostile_unit_name() -> None:
    status = {
        "ok": True,
        "daemon": {"pid": 1, "state": "idle", "config": "/etc/autoupdated.toml", "schedule": "daily"},
        "next_run": None,
        "last_run": record(HOSTILE_UNIT),
    }
    text = format_status(status)
    assert "Daemon:   running (pid 1), idle" in text
    assert HOSTILE_UNIT in text.splitlines()[-1]
    offline = format_status({"daemon": None, "daemon_error": "not running", "last_run": record("{{.Nope}}")})
    assert offline.splitlines()[-1].split()[0] == "{{.Nope}}"


def test_format_status_survives_a_record_of_the_wrong_shape() -> None:
    broken: dict[str, Any] = {"run": 3, "ok": False, "entries": "oops", "errors": 5, "warnings": [1]}
    assert format_run(broken).splitlines()[-1] == "  warning: 1"
    status = {
        "daemon": {"pid": 1, "state": "idle", "randomized_delay": "lots"},
        "current_run": "nonsense",
        "last_run": ["not", "a", "record"],
    }
    text = format_status(status)
    assert "randomized delay up to lots s" in text
    assert text.endswith("unreadable run record (list, not an object)")


PODMAN_ROWS = [
    report.row("container-web.service", "a" * 64, "web", "quay.io/x/y:1", "registry", "false"),
    report.row("pod-p.service", "b" * 64, "db", "127.0.0.1:5000/db:latest", "local", "rolled back"),
]


def test_table_has_podmans_columns():
    lines = report.render(PODMAN_ROWS).splitlines()
    assert lines[0].split() == ["UNIT", "CONTAINER", "IMAGE", "POLICY", "UPDATED"]
    assert lines[1].split() == ["container-web.service", "aaaaaaaaaaaa", "(web)", "quay.io/x/y:1", "registry", "false"]
    assert lines[2].endswith("local       rolled back")


def test_json_has_podmans_keys():
    data = json.loads(report.render(PODMAN_ROWS, "json"))
    assert list(data[0]) == ["Unit", "Container", "ContainerName", "ContainerID", "Image", "Policy", "Updated"]
    assert data[1]["Container"] == "bbbbbbbbbbbb (db)" and data[1]["Updated"] == "rolled back"


def test_templates():
    expected = "container-web.service,false\npod-p.service,rolled back\n"
    assert report.render(PODMAN_ROWS, "{{.Unit}},{{.Updated}}") == expected
    assert report.render(PODMAN_ROWS, "table {{.ContainerName}}\\t{{.Policy}}").splitlines()[0].split() == [
        "CONTAINERNAME",
        "POLICY",
    ]
    with pytest.raises(report.FormatError, match="can't evaluate field Nope"):
        report.render(PODMAN_ROWS, "{{.Nope}}")
    assert report.render([], "") == ""

"""The report `autoupdated check` prints: podman's table, JSON and template output.

Same columns, same JSON keys, same template fields as `podman auto-update`, so
scripts written against podman keep working.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

FIELDS = ("Unit", "Container", "ContainerName", "ContainerID", "Image", "Policy", "Updated")
TABLE_FORMAT = "{{.Unit}}\t{{.Container}}\t{{.Image}}\t{{.Policy}}\t{{.Updated}}"

_FIELD_RE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
_ACTION_RE = re.compile(r"\{\{(.*?)\}\}")


class FormatError(ValueError):
    """A --format the report cannot render."""


def row(unit: str, container_id: str, container_name: str, image: str, policy: str, updated: str) -> dict[str, str]:
    return {
        "Unit": unit,
        "Container": f"{container_id[:12]} ({container_name})",
        "ContainerName": container_name,
        "ContainerID": container_id,
        "Image": image,
        "Policy": policy,
        "Updated": updated,
    }


def _unescape(template: str) -> str:
    return template.replace("\\t", "\t").replace("\\n", "\n")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str


Part = str | _Field


def parse_template(template: str) -> tuple[Part, ...]:
    """The template as literals and fields, checked once.

    Values are put in later as data: a unit named `{{.Unit}}` must come out as that text, not
    be read again as template (it used to be, and broke even the default table).
    """
    parts: list[Part] = []
    pos = 0
    for match in _FIELD_RE.finditer(template):
        if match.start() > pos:
            parts.append(template[pos : match.start()])
        parts.append(_Field(match.group(1)))
        pos = match.end()
    if pos < len(template):
        parts.append(template[pos:])
    for part in parts:
        if isinstance(part, _Field) and part.name not in FIELDS:
            raise FormatError(
                f"template: auto-update: can't evaluate field {part.name} in type autoUpdateOutput; "
                f"valid fields are {', '.join(FIELDS)}"
            )
    # Any other {{...}} is an action we do not run.  Fields stand in as a plain letter, as a value
    # without braces did when the check ran on the substituted text.
    if leftover := _ACTION_RE.search("".join(part if isinstance(part, str) else "x" for part in parts)):
        raise FormatError(f"template: auto-update: unsupported action {{{{{leftover.group(1)}}}}}; use {{{{.Field}}}}")
    return tuple(parts)


def _fill(parts: Sequence[Part], values: Mapping[str, str]) -> str:
    return "".join(part if isinstance(part, str) else values[part.name] for part in parts)


def _cells(parts: Sequence[Part], values: Mapping[str, str]) -> list[str]:
    """A table line's cells: only the template's own tabs separate them, never a value's."""
    cells = [""]
    for part in parts:
        if isinstance(part, _Field):
            cells[-1] += values[part.name]
        else:
            first, *rest = part.split("\t")
            cells[-1] += first
            cells.extend(rest)
    return cells


def _table(lines: Sequence[Sequence[str]]) -> str:
    """Columns padded like Go's tabwriter (minwidth 12, padding 2) as podman prints them."""
    if not lines:
        return ""
    widths = [0] * max(len(line) for line in lines)
    for line in lines:
        for i, cell in enumerate(line[:-1]):
            widths[i] = max(widths[i], len(cell) + 2, 12)
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])]
        out.append(("".join(cells) + line[-1]).rstrip())
    return "\n".join(out) + "\n"


def render(rows: Iterable[Mapping[str, str]], fmt: str = "") -> str:
    """The text for `--format`: "" (table), "json", "table <template>" or a template."""
    rows = list(rows)
    if fmt == "json":
        return json.dumps([{key: r[key] for key in FIELDS} for r in rows], indent=4) + "\n"
    headers = fmt in ("", "table") or fmt.startswith("table ")
    template = (
        TABLE_FORMAT if fmt in ("", "table") else _unescape(fmt.removeprefix("table ").strip() if headers else fmt)
    )
    if not rows:
        return ""
    parts = parse_template(template)
    if not headers:
        rendered = [_fill(parts, r) for r in rows]
        return "".join(line if line.endswith("\n") else line + "\n" for line in rendered)
    header_values = {key: key.upper() for key in FIELDS}
    return _table([_cells(parts, header_values)] + [_cells(parts, r) for r in rows])

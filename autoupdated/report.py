"""The report `autoupdated check` prints: podman's table, JSON and template output.

Same columns, same JSON keys, same template fields as `podman auto-update`, so
scripts written against podman keep working.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence

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


def _render(template: str, values: Mapping[str, str]) -> str:
    def field(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise FormatError(
                f"template: auto-update: can't evaluate field {name} in type autoUpdateOutput; "
                f"valid fields are {', '.join(FIELDS)}"
            )
        return values[name]

    text = _FIELD_RE.sub(field, template)
    if leftover := _ACTION_RE.search(text):
        raise FormatError(f"template: auto-update: unsupported action {{{{{leftover.group(1)}}}}}; use {{{{.Field}}}}")
    return text


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
    rendered = [_render(template, r) for r in rows]
    if not headers:
        return "".join(line if line.endswith("\n") else line + "\n" for line in rendered)
    header_values = {key: key.upper() for key in FIELDS}
    lines = [_render(template, header_values).split("\t")] + [line.split("\t") for line in rendered]
    return _table(lines)

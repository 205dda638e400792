"""One container's controls: the file's top level, then `[[unit]]` sections matching its unit,
then `[[container]]` sections matching its name (later sections over earlier), then its
`io.autoupdated.*` labels, which win.  A label that is wrong fails only its container."""

from __future__ import annotations

import fnmatch
import re

from autoupdated.controls.model import LABEL_PREFIX, ControlError, Controls, ControlsConfig, Hook, Layer, Mode
from autoupdated.controls.tags import check_track
from autoupdated.controls.windows import WindowError, parse_windows

HOOK_KEYS = ("pre_update", "post_update", "on_rollback")
LABEL_KEYS = ("mode", "restart_window", "min_image_age", *HOOK_KEYS, "track_tags")
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_SPAN_SECONDS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_age(text: str) -> float:
    """A label's age: seconds, or a number with s, m, h, d or w ("24h")."""
    match = _SPAN.match(text.lower())
    if not match:
        raise ValueError(f'{text!r} is not a duration (write e.g. "24h", "30m", "2d")')
    return float(match.group(1)) * _SPAN_SECONDS[match.group(2)]


def label_layer(container: str, labels: dict[str, str]) -> Layer:
    """The controls a container's labels say; ControlError names the container and the label."""
    values: dict[str, object] = {}
    for key, text in labels.items():
        if not key.startswith(LABEL_PREFIX):
            continue
        name = key.removeprefix(LABEL_PREFIX)
        where = f"container {container}: label {key}={text!r}"
        if name not in LABEL_KEYS:
            known = ", ".join(LABEL_PREFIX + k for k in LABEL_KEYS)
            raise ControlError(f"{where}: unknown control (known labels: {known}); fix or remove the label")
        try:
            if name == "mode":
                values[name] = Mode(text.strip().lower())
            elif name == "restart_window":
                values[name] = parse_windows([part for part in text.split(";")])
            elif name == "min_image_age":
                values[name] = parse_age(text)
            elif name == "track_tags":
                values[name] = check_track(text) if text.strip() else ""
            else:
                values[name] = text.strip()
        except WindowError as err:
            raise ControlError(f"{where}: {err}; separate several windows with ';'") from None
        except ValueError as err:
            hint = "use auto, notify or approve" if name == "mode" else str(err)
            raise ControlError(f"{where}: {hint}") from None
    return Layer(**values)  # type: ignore[arg-type]


def resolve(config: ControlsConfig, container: str, unit: str, labels: dict[str, str]) -> Controls:
    layer = config.defaults
    for kind, name in (("unit", unit), ("container", container)):
        for section in config.sections:
            if section.kind == kind and fnmatch.fnmatchcase(name, section.match):
                layer = section.layer.over(layer)
    from_labels = label_layer(container, labels)
    layer = from_labels.over(layer)
    hooks: dict[str, Hook | None] = {}
    for key in HOOK_KEYS:
        name = getattr(layer, key)
        if not name:
            hooks[key] = None
            continue
        if name not in config.hooks:
            origin = f"label {LABEL_PREFIX}{key}={name!r}" if getattr(from_labels, key) else f"config key {key!r}"
            defined = ", ".join(sorted(config.hooks)) or "none"
            raise ControlError(
                f"container {container}: {origin} names hook {name!r}, which the config does not define "
                f"(defined: {defined}); hooks run as root, so only [hooks.NAME] tables in the config "
                "define them: add one there or fix the name. The hook was not run."
            )
        hooks[key] = config.hooks[name]
    return Controls(
        mode=layer.mode or Mode.AUTO,
        restart_window=layer.restart_window or (),
        min_image_age=layer.min_image_age or 0.0,
        pre_update=hooks["pre_update"],
        post_update=hooks["post_update"],
        on_rollback=hooks["on_rollback"],
        track_tags=layer.track_tags or "",
    )

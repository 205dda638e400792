"""The configuration of what autoupdated tells people: `[[notify]]` targets and the metrics listener.

Pure (no IO): config.py uses these types for its keys, the daemon and the CLI read them.

Apprise URLs carry tokens and passwords, so a target is never shown as its URL: `public()` gives
the masked form (scheme and, where the URL has a real host, the host and port), and
`secrets()` gives every part of the URLs that might be secret, for `autoupdated.secrets.Secrets`
to scrub from any text on its way to a log or a terminal.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EventKind = Literal["update_available", "updated", "rolled_back", "failed", "error", "daemon"]
EVENTS: tuple[str, ...] = ("update_available", "updated", "rolled_back", "failed", "error", "daemon")
MASK = "***"
MAX_SOCKET_PATH = 107

# Schemes whose URL host is a host name (not a token), so the masked form may show it.
_HOST_SCHEMES = frozenset(
    (
        "json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos", "ntfy", "ntfys",
        "gotify", "gotifys", "apprise", "apprises", "mqtt", "mqtts", "matrix", "matrixs",
    )
)  # fmt: skip
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def scheme_of(url: str) -> str:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def mask_url(url: str) -> str:
    """`json://user:secret@host:8080/hook?token=x` → `json://host:8080/***`; never a secret."""
    scheme = scheme_of(url)
    if not scheme:
        return MASK
    if scheme in _HOST_SCHEMES:
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            host = port = ""
        if host:
            rest = url[len(scheme) + 3 :]
            tail = MASK if ("@" in rest or "/" in rest.split("@")[-1] or "?" in rest) else ""
            return f"{scheme}://{host}{port}/{tail}" if tail else f"{scheme}://{host}{port}"
    return f"{scheme}://{MASK}"


def url_secrets(url: str) -> list[str]:
    """Every part of `url` that may be a secret: the URL, its user info, path segments, query values."""
    found = [url]
    rest = url[len(scheme_of(url)) + 3 :] if scheme_of(url) else url
    found.append(rest)
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    for value in (parts.username, parts.password, parts.path, parts.query, parts.fragment):
        if value:
            found += [value, unquote(value)]
    if parts.netloc and "@" in parts.netloc:
        found.append(parts.netloc.rpartition("@")[0])
    if scheme_of(url) not in _HOST_SCHEMES and parts.netloc:
        found.append(parts.netloc)  # e.g. tgram://BOTTOKEN/...: the "host" is the token
    found += [segment for segment in parts.path.split("/") if segment]
    found += [value for _, value in parse_qsl(parts.query) if value]
    return found


_TARGET_KEYS = ("name", "url", "urls", "config", "events", "containers", "units")


class NotifyTarget(BaseModel):
    """One `[[notify]]` entry: where to send (Apprise URLs or an Apprise config file), and what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    url: str | None = None
    urls: list[str] = Field(default_factory=list)
    config: str | None = None
    events: list[EventKind] = Field(default_factory=lambda: list(EVENTS))  # type: ignore[arg-type]
    containers: list[str] = Field(default_factory=list)
    units: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's own message would echo the value, which may be a URL with its token.
        if isinstance(data, dict):
            for key in data:
                if key not in _TARGET_KEYS:
                    hint = difflib.get_close_matches(str(key), _TARGET_KEYS, n=1)
                    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                    raise ValueError(
                        f"unknown key {key!r} in a [[notify]] entry{suggestion} (known keys: {', '.join(_TARGET_KEYS)})"
                    )
        return data

    @field_validator("url")
    @classmethod
    def _one_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)
        return value

    @field_validator("urls")
    @classmethod
    def _many_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            check_url(url)
        return value

    @field_validator("config")
    @classmethod
    def _config_path(cls, value: str | None) -> str | None:
        if value is not None and (not os.path.isabs(value) or "\0" in value):
            raise ValueError(
                "must be an absolute path to an Apprise config file "
                f'(e.g. "/etc/autoupdated/apprise.yml"), got {value!r}'
            )
        return value

    @field_validator("containers", "units")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        if any(not item for item in value):
            raise ValueError("contains an empty pattern")
        return value

    @model_validator(mode="after")
    def _somewhere(self) -> NotifyTarget:
        if self.url is None and not self.urls and self.config is None:
            raise ValueError('a [[notify]] entry needs `url = "..."`, `urls = [...]` or `config = "/path/apprise.yml"`')
        if not self.events:
            raise ValueError(f"`events` is empty: name at least one of {', '.join(EVENTS)}")
        return self

    @property
    def all_urls(self) -> list[str]:
        return ([self.url] if self.url else []) + list(self.urls)

    def label(self, index: int) -> str:
        """How logs, metrics and `notify test` name the target: its name, else notify[INDEX]."""
        return self.name or f"notify[{index}]"

    def wants(self, event: str, container: str = "", unit: str = "") -> bool:
        if event not in self.events:
            return False
        if event in ("error", "daemon"):
            return True
        if self.containers and not any(fnmatch.fnmatchcase(container, glob) for glob in self.containers):
            return False
        return not self.units or any(fnmatch.fnmatchcase(unit, glob) for glob in self.units)

    def secrets(self) -> list[str]:
        return [part for url in self.all_urls for part in url_secrets(url)]

    def public(self) -> dict[str, object]:
        """The entry as `config show` and `status` may print it: URLs masked."""
        shown: dict[str, object] = {}
        if self.name:
            shown["name"] = self.name
        if self.url:
            shown["url"] = mask_url(self.url)
        if self.urls:
            shown["urls"] = [mask_url(url) for url in self.urls]
        if self.config:
            shown["config"] = self.config
        shown["events"] = list(self.events)
        if self.containers:
            shown["containers"] = list(self.containers)
        if self.units:
            shown["units"] = list(self.units)
        return shown

    def __repr__(self) -> str:
        return f"NotifyTarget({self.public()!r})"

    __str__ = __repr__


def check_url(url: str) -> None:
    """An Apprise URL Apprise can use; the message shows only its masked form."""
    scheme = scheme_of(url)
    if not scheme:
        raise ValueError(
            f'{mask_url(url)!r} is not an Apprise URL (write e.g. "json://host:port/path" or "mailto://...")'
        )
    if scheme not in known_schemes():
        hint = difflib.get_close_matches(scheme, sorted(known_schemes()), n=1)
        suggestion = f"; did you mean {hint[0]}://?" if hint else ""
        raise ValueError(
            f"Apprise knows no scheme {scheme}:// (in {mask_url(url)}){suggestion}; "
            "see https://github.com/caronc/apprise/wiki"
        )


@functools.cache
def known_schemes() -> frozenset[str]:
    """The URL schemes of Apprise's plugins (imported only when a [[notify]] entry is configured)."""
    import logging

    logging.getLogger("apprise").addHandler(logging.NullHandler())
    logging.getLogger("apprise").propagate = False  # Apprise's own logs may name a URL
    from apprise.manager_plugins import NotificationManager

    return frozenset(str(scheme).lower() for scheme in NotificationManager().schemas())  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Listen:
    """Where /metrics and /api/v1 are served: a TCP host and port, or a unix socket path."""

    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> Listen:
        if text.startswith("/"):
            if len(os.fsencode(text)) > MAX_SOCKET_PATH or "\0" in text:
                raise ValueError(f"unix socket path {text!r} is too long (at most {MAX_SOCKET_PATH} bytes)")
            return cls(path=text)
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(
                f'{text!r} is not HOST:PORT or an absolute unix socket path (e.g. "127.0.0.1:9369", '
                '"[::1]:9369", "/run/autoupdated/metrics.sock")'
            )
        host = host.removeprefix("[").removesuffix("]")
        if not host:
            raise ValueError(
                f'{text!r} has no host: write "127.0.0.1:{port_text}" (local only) or, to listen on every '
                f'interface, "0.0.0.0:{port_text}" explicitly (see docs/metrics.md for a reverse proxy)'
            )
        return cls(host=host, port=int(port_text))

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def check_listen(value: str | None) -> str | None:
    if value is not None:
        Listen.parse(value)
    return value

"""Sending messages through Apprise: one `[[notify]]` target, its URLs and Apprise config file.

Blocking by nature (Apprise uses requests and smtplib): the daemon calls `send` in a thread,
with a deadline of its own.  Each URL is tried on its own, with bounded retries, so a retry
never sends twice to a URL that already took the message.

Apprise's own log lines may name a URL with its token: they are captured per send (never
reach stderr or the journal) and only their scrubbed text is given back as the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoupdated.events import Message
from autoupdated.notifyconf import NotifyTarget, mask_url, url_secrets
from autoupdated.secrets import Secrets, clip


def _apprise() -> Any:
    """Apprise, imported at the first send: it and its plugins take about 17 MB, which a daemon
    without [[notify]] entries (most of them) would hold for nothing (the idle target is 60 MB)."""
    import apprise

    return apprise


_LOCK = threading.Lock()  # Apprise's log capture is per logger, not per call: one send at a time
_apprise_log = logging.getLogger("apprise")
_apprise_log.addHandler(logging.NullHandler())
_apprise_log.propagate = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """One URL's result: where (masked), whether it took the message, after how many tries, why not."""

    where: str
    ok: bool
    attempts: int
    reason: str = ""


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.lines.append(record.getMessage())


class AppriseTarget:
    """The URLs of one [[notify]] entry (its `config` file read at each send: it may change)."""

    def __init__(self, target: NotifyTarget, label: str, *, timeout: float, retries: int) -> None:
        self.target = target
        self.label = label
        self.timeout = timeout
        self.retries = retries
        self.secrets = Secrets(target.secrets())

    def send(self, message: Message, sleep: Callable[[float], None] = time.sleep) -> list[Delivery]:
        with _LOCK:
            capture = _Capture()
            _apprise_log.addHandler(capture)
            try:
                plugins = self._plugins(capture)
                if isinstance(plugins, Delivery):
                    return [plugins]
                return [self._deliver(where, plugin, message, capture, sleep) for where, plugin in plugins]
            finally:
                _apprise_log.removeHandler(capture)

    def _plugins(self, capture: _Capture) -> list[tuple[str, Any]] | Delivery:
        found: list[tuple[str, Any]] = []
        for url in self.target.all_urls:
            plugin = _apprise().Apprise.instantiate(url)
            if plugin is None:
                return Delivery(mask_url(url), False, 0, self._reason(capture, "Apprise cannot use this URL"))
            found.append((mask_url(url), plugin))
        if self.target.config:
            config = _apprise().AppriseConfig()
            if not config.add(self.target.config):
                return Delivery(
                    self.target.config, False, 0, f"cannot read the Apprise config file {self.target.config}"
                )
            services: list[Any] = list(config.services())
            if not services:
                reason = self._reason(capture, "it defines no usable URL")
                return Delivery(self.target.config, False, 0, f"Apprise config file {self.target.config}: {reason}")
            for plugin in services:
                url = str(plugin.url())
                for part in url_secrets(url):
                    self.secrets.add(part)
                found.append((f"{self.target.config}: {mask_url(url)}", plugin))
        for _, plugin in found:
            plugin.socket_connect_timeout = self.timeout
            plugin.socket_read_timeout = self.timeout
        return found

    def _deliver(
        self,
        where: str,
        plugin: Any,
        message: Message,
        capture: _Capture,
        sleep: Callable[[float], None],
    ) -> Delivery:
        attempts = 0
        while True:
            attempts += 1
            capture.lines.clear()
            try:
                ok = bool(
                    plugin.notify(
                        body=message.body,
                        title=message.title,
                        notify_type=_apprise().NotifyType(message.kind),
                        body_format=_apprise().NotifyFormat.TEXT,
                    )
                )
                reason = "" if ok else self._reason(capture, "the service refused it")
            except Exception as err:  # a plugin's bug or an unexpected network error
                ok, reason = False, self._reason(capture, f"{type(err).__name__}: {err}")
            if ok or attempts > self.retries:
                return Delivery(where, ok, attempts, reason)
            sleep(min(2.0 ** (attempts - 1), 30.0))

    def _reason(self, capture: _Capture, fallback: str) -> str:
        text = "; ".join(dict.fromkeys(capture.lines)) or fallback
        return clip(self.secrets.scrub(text), 300)

"""The daemon's Prometheus metrics, in a registry of their own (not prometheus_client's global one).

Labels stay bounded: container and unit names (as many as the host runs), registry hosts (as
many as its images use), policies, statuses and target names (from the configuration); never
a digest, an image ID or an error text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, write_to_textfile

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self, next_run: Callable[[], float | None] = lambda: None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter("autoupdated_runs", "Runs by outcome (ok, failed).", ["outcome"], registry=r)
        self.run_duration = Histogram(
            "autoupdated_run_duration_seconds", "How long runs took.", buckets=RUN_BUCKETS, registry=r
        )
        self.containers = Gauge(
            "autoupdated_containers",
            "Containers in the last run, by policy and status.",
            ["policy", "status"],
            registry=r,
        )
        self.update_available = Gauge(
            "autoupdated_update_available",
            "1 when the last run found a newer image it did not apply (pending), else 0.",
            ["container", "unit"],
            registry=r,
        )
        self.last_check = Gauge(
            "autoupdated_last_successful_check_timestamp_seconds",
            "When the last run checked this container without failing it.",
            ["container", "unit"],
            registry=r,
        )
        self.updates = Counter("autoupdated_updates", "Containers updated.", registry=r)
        self.rollbacks = Counter("autoupdated_rollbacks", "Containers rolled back after a failed update.", registry=r)
        self.failures = Counter("autoupdated_failures", "Containers whose update failed.", registry=r)
        self.registry_requests = Counter(
            "autoupdated_registry_requests",
            "Requests to registries by host, method and HTTP status (or error).",
            ["registry", "method", "status"],
            registry=r,
        )
        self.rate_limit_waits = Counter(
            "autoupdated_registry_rate_limit_waits", "Waits a registry's 429 imposed.", ["registry"], registry=r
        )
        self.rate_limit_seconds = Counter(
            "autoupdated_registry_rate_limit_wait_seconds", "Time spent waiting for 429s.", ["registry"], registry=r
        )
        self.notifications = Counter(
            "autoupdated_notifications",
            "Notification sends by target and result (sent, failed).",
            ["target", "result"],
            registry=r,
        )
        self.last_run = Gauge("autoupdated_last_run_timestamp_seconds", "When the last run finished.", registry=r)
        self.next_run = Gauge(
            "autoupdated_next_run_timestamp_seconds", "When the next scheduled run is due (0: none).", registry=r
        )
        self.next_run.set_function(lambda: next_run() or 0.0)
        self._checked: dict[tuple[str, str], float] = {}

    # -- what the daemon tells --------------------------------------------------------------

    def observe_run(self, run: Mapping[str, Any]) -> None:
        """A finished run's record (daemon/status.py's RunRecord.as_dict())."""
        self.runs.labels("ok" if run.get("ok") else "failed").inc()
        if run.get("duration") is not None:
            self.run_duration.observe(float(run["duration"]))
        finished = _timestamp(run.get("finished")) or time.time()
        self.last_run.set(finished)
        entries: Sequence[Mapping[str, Any]] = run.get("entries") or []
        if run.get("error") and not entries:
            return  # the run failed before it saw any container: keep the last run's picture
        self.containers.clear()
        self.update_available.clear()
        for entry in entries:
            policy, status = str(entry.get("policy") or ""), str(entry.get("updated") or "")
            self.containers.labels(policy, status).inc()
            name, unit = str(entry.get("container_name") or ""), str(entry.get("unit") or "")
            self.update_available.labels(name, unit).set(1 if status == "pending" else 0)
            if status != "failed":
                self._checked[(name, unit)] = finished
            self.updates.inc(status == "true")
            self.rollbacks.inc(status == "rolled back")
            self.failures.inc(status == "failed")
        seen = {(str(e.get("container_name") or ""), str(e.get("unit") or "")) for e in entries}
        self._checked = {key: value for key, value in self._checked.items() if key in seen}
        self.last_check.clear()
        for (name, unit), when in self._checked.items():
            self.last_check.labels(name, unit).set(when)

    def registry_request(self, host: str, method: str, status: str) -> None:
        self.registry_requests.labels(host, method, status).inc()

    def rate_limit_wait(self, host: str, seconds: float) -> None:
        self.rate_limit_waits.labels(host).inc()
        self.rate_limit_seconds.labels(host).inc(seconds)

    def notification(self, target: str, ok: bool) -> None:
        self.notifications.labels(target, "sent" if ok else "failed").inc()

    # -- exposition -------------------------------------------------------------------------

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def write_textfile(self, path: str) -> None:
        """node_exporter's textfile collector: written to a temporary file, then renamed."""
        write_to_textfile(path, self.registry)


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None

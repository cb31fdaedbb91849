"""Prometheus metrics: an HTTP endpoint (``metrics.listen``) and/or a node-exporter
textfile (``metrics.textfile``, written atomically), both from one registry.

Gauges are set from the status each cycle saves, so the metrics say exactly what
``status`` and ``check`` say.  Counters count since the process started (Prometheus'
``rate()`` handles restarts); for a one-shot ``sync`` writing the textfile they count that
one cycle, so a ``sync`` leaves the textfile alone while ``run`` is alive.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
    write_to_textfile,
)

from .. import __version__
from ..config import Config, split_listen
from ..decide import HOLD_REASONS
from ..errors import NfsExportdError
from ..memory.status import Status
from ..read.inventory import observe
from .bus import TRIGGER_EVENTS

log = logging.getLogger("nfs_exportd")
disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: the families are exactly METRIC_NAMES

RESULTS = ("ok", "held", "error")
MODES = ("off", "hold", "freeze")
ACTIONS = ("add", "remove", "update")

METRIC_NAMES = frozenset(
    {
        "nfs_exportd_info",
        "nfs_exportd_last_cycle_timestamp_seconds",
        "nfs_exportd_last_cycle_result",
        "nfs_exportd_cycles_total",
        "nfs_exportd_cycle_duration_seconds",
        "nfs_exportd_last_complete_inventory_timestamp_seconds",
        "nfs_exportd_holds",
        "nfs_exportd_exports",
        "nfs_exportd_clients",
        "nfs_exportd_pairs",
        "nfs_exportd_projects",
        "nfs_exportd_changes_applied_total",
        "nfs_exportd_api_requests_total",
        "nfs_exportd_api_request_duration_seconds",
        "nfs_exportd_maintenance",
        "nfs_exportd_rollback_hold",
        # when the maintenance flag was set (its mtime; 0: no flag): the age that check
        # measures, so that an alert can say "forgotten for 24 h" as check does
        "nfs_exportd_maintenance_flag_timestamp_seconds",
        "nfs_exportd_notifications_total",
        "nfs_exportd_last_notification_timestamp_seconds",
        "nfs_exportd_bus_connected",
        "nfs_exportd_early_cycles_total",
        "nfs_exportd_change_polls_total",
    }
)
# written by ``diagnose`` to diagnose.metrics_textfile (a registry of its own)
DIAGNOSE_METRIC_NAMES = frozenset(
    {"nfs_exportd_refusals", "nfs_exportd_diagnose_timestamp_seconds"}
)
# notifications by event type: those that trigger, plus "other" (ignored) and "malformed"
NOTIFICATION_TYPES = (*sorted(TRIGGER_EVENTS), "other", "malformed")
TRIGGERS = ("notification", "change-poll")
POLL_RESULTS = ("changed", "unchanged", "error")

_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "nfs_exportd_"
        self.info = Gauge(p + "info", "nfs-exportd version", ["version"], registry=r)
        self.info.labels(__version__).set(1)
        self.last_cycle = Gauge(
            p + "last_cycle_timestamp_seconds", "When the last cycle finished", registry=r
        )
        self.last_result = Gauge(
            p + "last_cycle_result", "1 for the result of the last cycle", ["result"], registry=r
        )
        self.cycles = Counter(p + "cycles", "Cycles run, by result", ["result"], registry=r)
        self.duration = Histogram(
            p + "cycle_duration_seconds",
            "Duration of a cycle",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.last_complete = Gauge(
            p + "last_complete_inventory_timestamp_seconds",
            "When the inventory was last read completely",
            registry=r,
        )
        self.holds = Gauge(
            p + "holds", "Holds in the last cycle, by reason", ["reason"], registry=r
        )
        self.exports = Gauge(p + "exports", "Export lines (path per file) in force", registry=r)
        self.clients = Gauge(p + "clients", "Distinct client addresses in force", registry=r)
        self.pairs = Gauge(p + "pairs", "(path, client) pairs in force", registry=r)
        self.projects = Gauge(p + "projects", "Projects with a managed file in force", registry=r)
        self.changes = Counter(
            p + "changes_applied", "Changes applied, by action", ["action"], registry=r
        )
        self.api_requests = Counter(
            p + "api_requests",
            "Control-plane requests, by service and HTTP status ('error': no answer)",
            ["service", "status"],
            registry=r,
        )
        self.api_latency = Histogram(
            p + "api_request_duration_seconds",
            "Control-plane request latency",
            ["service"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.maintenance = Gauge(
            p + "maintenance", "1 for the maintenance mode in force", ["mode"], registry=r
        )
        self.rollback_hold = Gauge(
            p + "rollback_hold", "1 while a rollback holds changes until release", registry=r
        )
        self.flag_since = Gauge(
            p + "maintenance_flag_timestamp_seconds",
            "When the maintenance flag file was last modified (0: no flag)",
            registry=r,
        )
        self.notifications = Counter(
            p + "notifications",
            "Notifications received from the message bus, by event type ('other': ignored)",
            ["event_type"],
            registry=r,
        )
        self.last_notification = Gauge(
            p + "last_notification_timestamp_seconds",
            "When the last notification that triggers a cycle arrived",
            registry=r,
        )
        self.bus_connected = Gauge(
            p + "bus_connected",
            "1 while the notification listener is connected (0 also when it is off)",
            registry=r,
        )
        self.early_cycles = Counter(
            p + "early_cycles",
            "Cycles run before they were due, by what triggered them",
            ["trigger"],
            registry=r,
        )
        self.change_polls = Counter(
            p + "change_polls", "Change polls, by result", ["result"], registry=r
        )
        for t in NOTIFICATION_TYPES:
            self.notifications.labels(t)
        for t in TRIGGERS:
            self.early_cycles.labels(t)
        for res in POLL_RESULTS:
            self.change_polls.labels(res)
        for res in RESULTS:
            self.last_result.labels(res).set(0)
            self.cycles.labels(res)
        for reason in HOLD_REASONS:
            self.holds.labels(reason.value).set(0)
        for action in ACTIONS:
            self.changes.labels(action)
        for mode in MODES:
            self.maintenance.labels(mode).set(0)
        observe.add_listener(self.request)

    def close(self) -> None:
        observe.remove_listener(self.request)

    def request(self, service: str, status: str, seconds: float) -> None:
        self.api_requests.labels(service, status).inc()
        self.api_latency.labels(service).observe(seconds)

    def failed(self, duration: float) -> None:
        """A cycle that could not start (the state lock): an error, nothing else known."""
        self.cycles.labels("error").inc()
        self.duration.observe(duration)
        for res in RESULTS:
            self.last_result.labels(res).set(1 if res == "error" else 0)
        self.last_cycle.set(time.time())

    def cycle(self, status: Status, duration: float) -> None:
        """Account one cycle from the status it saved (an empty one: it saved none)."""
        last = status.last_cycle
        result = last.result if last is not None else "error"
        self.cycles.labels(result).inc()
        self.duration.observe(duration)
        for res in RESULTS:
            self.last_result.labels(res).set(1 if res == result else 0)
        self.last_cycle.set(last.finished if last is not None else time.time())
        if status.last_complete_inventory:
            self.last_complete.set(status.last_complete_inventory)
        if result == "error":
            return  # nothing else is known about this cycle; the rest stays as it was
        held = status.holds_by_reason
        for reason in set(held) | {r.value for r in HOLD_REASONS}:
            self.holds.labels(reason).set(float(held.get(reason, 0)))
        counts = status.counts
        self.exports.set(counts.exports)
        self.clients.set(counts.clients)
        self.pairs.set(counts.pairs)
        self.projects.set(counts.projects)
        for action, n in status.applied.items():
            if n:
                self.changes.labels(action).inc(n)
        for m in MODES:
            self.maintenance.labels(m).set(1 if m == status.maintenance.value else 0)
        self.rollback_hold.set(1 if status.rollback_hold else 0)

    def notification(self, kind: str, event_type: str, now: float) -> None:
        label = event_type if kind == "trigger" else "other" if kind == "ignored" else kind
        self.notifications.labels(label).inc()
        if kind == "trigger":
            self.last_notification.set(now)


class Exporter:
    """Where the metrics go, per config: an HTTP endpoint, a textfile, or nothing."""

    def __init__(self, cfg: Config) -> None:
        self.metrics = Metrics()
        self.textfile: Path | None = cfg.metrics.textfile
        self.listen = cfg.metrics.listen
        self.maintenance_file = cfg.maintenance_file
        self._server: Any = None

    @property
    def active(self) -> bool:
        return bool(self.textfile or self.listen)

    def start(self) -> None:
        if not self.listen:
            return
        host, port = split_listen(self.listen)
        # the endpoint adds the process metrics (CPU, memory, open fds, start time); the
        # textfile never has them: node-exporter exports its own process_* families
        served = CollectorRegistry(auto_describe=True)
        served.register(ProcessCollector(registry=None))
        served.register(self.metrics.registry)
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=served)
        except OSError as exc:
            raise NfsExportdError(
                f"metrics.listen {self.listen}: cannot listen: {exc.strerror or exc}"
            ) from None
        log.info("metrics on http://%s/metrics", self.listen)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.metrics.close()

    def cycle(self, status: Status, duration: float) -> None:
        self.metrics.cycle(status, duration)
        self.flag()
        self.write_textfile()

    def failed(self, duration: float) -> None:
        self.metrics.failed(duration)
        self.flag()
        self.write_textfile()

    def flag(self) -> None:
        try:
            since = self.maintenance_file.stat().st_mtime
        except OSError:  # no flag (one that cannot be stat'ed is no flag to age either)
            since = 0.0
        self.metrics.flag_since.set(since)

    def notification(self, kind: str, event_type: str, now: float) -> None:
        self.metrics.notification(kind, event_type, now)

    def bus_connected(self, connected: bool) -> None:
        self.metrics.bus_connected.set(1 if connected else 0)
        self.write_textfile()

    def early_cycle(self, triggers: tuple[str, ...]) -> None:
        for t in triggers or ("notification",):
            if t in TRIGGERS:
                self.metrics.early_cycles.labels(t).inc()

    def change_poll(self, result: str) -> None:
        self.metrics.change_polls.labels(result).inc()

    def write_textfile(self) -> None:
        if self.textfile is None:
            return
        try:
            # write_to_textfile writes a temporary file beside it and renames it
            write_to_textfile(str(self.textfile), self.metrics.registry)
        except OSError as exc:
            log.error("metrics.textfile %s: cannot write: %s", self.textfile, exc)


def write_refusals(path: Path, counts: dict[str, int], now: float) -> None:
    """``diagnose``'s refusal counts by cause, to a node-exporter textfile of its own (the
    cycle's textfile has one writer: ``run``/``sync``).  Raises NfsExportdError."""
    from ..decide.diagnose import Cause

    r = CollectorRegistry()
    g = Gauge(
        "nfs_exportd_refusals",
        "Refused NFS requests in diagnose's window, by cause",
        ["cause"],
        registry=r,
    )
    for cause in Cause:
        g.labels(cause.value).set(counts.get(cause.value, 0))
    Gauge("nfs_exportd_diagnose_timestamp_seconds", "When diagnose last ran", registry=r).set(now)
    try:
        write_to_textfile(str(path), r)
    except OSError as exc:
        raise NfsExportdError(f"diagnose.metrics_textfile {path}: cannot write: {exc}") from None

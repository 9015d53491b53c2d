"""Prometheus metrics of the coordinator: requests, workers, worker frames, event lag.

One registry per app (never the process-global one), so several apps in one
test process do not collide. Live state (workers, tenants) is snapshotted on
the event loop; the event-log probe and the text rendering run in a thread.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter

log = logging.getLogger("vectorpanda.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")


# Label sets of the request metrics whose children are kept (methods come from clients).
MAX_CACHED_LABEL_SETS = 1024


def route_template(scope: MutableMapping[str, Any]) -> str:
    """The matched route's path template (``/v1/collections/{name}``), never the raw path."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


@dataclass
class WorkerSnapshot:
    """What the hub and router knew about one live worker at scrape time."""

    worker_id: str
    assigned_tenants: int
    heartbeat_age_s: float
    load: dict[str, float] = field(default_factory=dict)
    space: dict[str, dict[str, int]] = field(default_factory=dict)


class _WorkerCollector(Collector):
    def __init__(self) -> None:
        self.workers: list[WorkerSnapshot] = []
        self.losses = 0
        self.fences = 0
        self.placement_changes = 0
        self.unservable = 0
        self.unservable_over_bound = 0
        self.unservable_alerts = 0

    def collect(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("vectorpanda_workers_live", "Workers connected and live.")
        live.add_metric([], len(self.workers))
        yield live
        assigned = GaugeMetricFamily(
            "vectorpanda_worker_tenants",
            "Tenants the coordinator has assigned to each live worker.",
            labels=["worker"],
        )
        loaded = GaugeMetricFamily(
            "vectorpanda_worker_loaded_tenants",
            "Tenants loaded in memory, as reported by each worker's heartbeat.",
            labels=["worker"],
        )
        memory = GaugeMetricFamily(
            "vectorpanda_worker_memory_bytes",
            "Index memory held by each worker (heartbeat).",
            labels=["worker"],
        )
        queue = GaugeMetricFamily(
            "vectorpanda_worker_queue_depth",
            "Requests queued in each worker (heartbeat).",
            labels=["worker"],
        )
        age = GaugeMetricFamily(
            "vectorpanda_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat.",
            labels=["worker"],
        )
        other = GaugeMetricFamily(
            "vectorpanda_worker_load",
            "Other numeric fields of each worker's heartbeat load report.",
            labels=["worker", "field"],
        )
        for w in self.workers:
            assigned.add_metric([w.worker_id], w.assigned_tenants)
            age.add_metric([w.worker_id], w.heartbeat_age_s)
            for name, value in w.load.items():
                target = {"tenants": loaded, "memory_bytes": memory, "queue_depth": queue}.get(name)
                if target is not None:
                    target.add_metric([w.worker_id], value)
                else:
                    other.add_metric([w.worker_id, name], value)
        yield from (assigned, loaded, memory, queue, age, other)
        yield from _space_metrics(self.workers)
        losses = CounterMetricFamily(
            "vectorpanda_worker_losses", "Workers declared gone (socket closed or silent)."
        )
        losses.add_metric([], self.losses)
        yield losses
        fences = CounterMetricFamily(
            "vectorpanda_worker_fences",
            "Silent workers whose process was killed before their tenants were handed on.",
        )
        fences.add_metric([], self.fences)
        yield fences
        moves = CounterMetricFamily(
            "vectorpanda_placement_changes", "Tenant ownership assignments made by the router."
        )
        moves.add_metric([], self.placement_changes)
        yield moves
        yield GaugeMetricFamily(
            "vectorpanda_tenants_unservable",
            "Tenants whose hand-over to a worker failed and is being retried.",
            value=self.unservable,
        )
        yield GaugeMetricFamily(
            "vectorpanda_tenants_unservable_over_bound",
            "Tenants unservable for longer than VP_TENANT_UNAVAILABLE_ALERT_S.",
            value=self.unservable_over_bound,
        )
        alerts = CounterMetricFamily(
            "vectorpanda_tenant_unavailable_alerts",
            "Operations alerts raised for tenants unservable past the bound.",
        )
        alerts.add_metric([], self.unservable_alerts)
        yield alerts


def _space_metrics(workers: list[WorkerSnapshot]) -> Iterator[Metric]:
    free = GaugeMetricFamily(
        "vectorpanda_worker_free_bytes",
        "Free bytes of each worker's hot and cold store (heartbeat).",
        labels=["worker", "store"],
    )
    floor = GaugeMetricFamily(
        "vectorpanda_worker_min_free_bytes",
        "Free space below which each worker refuses writes (VP_MIN_FREE_BYTES).",
        labels=["worker", "store"],
    )
    for w in workers:
        for store, figures in w.space.items():
            if "free_bytes" in figures:
                free.add_metric([w.worker_id, store], figures["free_bytes"])
            if "min_free_bytes" in figures:
                floor.add_metric([w.worker_id, store], figures["min_free_bytes"])
    yield from (free, floor)


class EventLogProbe(Collector):
    """Relay and consumer lag, read from the event store and the audit database.

    Read-only sqlite3 opens (``mode=ro``): a scrape must never create a file,
    take a write lock or hold up a writer. With the control plane on PostgreSQL
    ``control_db`` is its engine, and the two reads go through a pooled connection.
    """

    def __init__(self, control_db: Path | Engine, audit_db: Path | Engine) -> None:
        self.control_db = control_db
        self.audit_db = audit_db

    def _control(self, sql: str) -> list[tuple[Any, ...]]:
        return self._read(self.control_db, sql)

    @classmethod
    def _read(cls, db: Path | Engine, sql: str) -> list[tuple[Any, ...]]:
        if isinstance(db, Path):
            return cls._query(db, sql)
        with db.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(sql)]

    @staticmethod
    def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "vectorpanda_event_log_probe_up", "1 when the event log could be read for lag metrics."
        )
        try:
            head = int(self._control("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0])
            pending, oldest = self._control(
                "SELECT COUNT(*), MIN(e.occurred_at) FROM outbox o JOIN events e ON e.seq = o.seq",
            )[0]
            checkpoints: list[tuple[Any, ...]] = []
            if isinstance(self.audit_db, Engine) or self.audit_db.exists():
                checkpoints = self._read(self.audit_db, "SELECT consumer, seq FROM checkpoints")
        except (sqlite3.Error, SQLAlchemyError, IndexError, ValueError) as exc:
            log.debug("event log probe failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "vectorpanda_event_log_head_seq", "Sequence number of the newest event.", value=head
        )
        yield GaugeMetricFamily(
            "vectorpanda_relay_pending_events",
            "Events stored but not yet confirmed by the bus (outbox rows).",
            value=int(pending),
        )
        yield GaugeMetricFamily(
            "vectorpanda_relay_lag_seconds",
            "Age of the oldest event still waiting in the outbox (0 when drained).",
            value=_age_s(oldest) if oldest else 0.0,
        )
        seq = GaugeMetricFamily(
            "vectorpanda_consumer_checkpoint_seq",
            "Last event seq each consumer applied.",
            labels=["consumer"],
        )
        lag = GaugeMetricFamily(
            "vectorpanda_consumer_lag_events",
            "Events in the log that each consumer has not applied yet.",
            labels=["consumer"],
        )
        for consumer, cp in checkpoints:
            seq.add_metric([str(consumer)], int(cp))
            lag.add_metric([str(consumer)], max(head - int(cp), 0))
        yield seq
        yield lag


def _age_s(occurred_at: str) -> float:
    when = datetime.strptime(occurred_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return max((datetime.now(UTC) - when).total_seconds(), 0.0)


class Metrics:
    """The coordinator's metrics registry and the hooks that feed it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vectorpanda_http_requests",
            "API requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "vectorpanda_http_request_duration_seconds",
            "API request latency by route template, method and status (requests refused "
            "at the admission gate are counted in vectorpanda_http_requests only).",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.internal_errors = Counter(
            "vectorpanda_internal_errors",
            "Exceptions that escaped a request handler (answered 500 internal), by route.",
            ["route", "method"],
            registry=self.registry,
        )
        self.frame_seconds = Histogram(
            "vectorpanda_worker_frame_duration_seconds",
            "Coordinator-to-worker round trip by operation and outcome. For upsert "
            "and delete this includes the worker's WAL fsync.",
            ["op", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.emails_sent = Counter(
            "vectorpanda_emails_sent", "Emails the notifier delivered.", registry=self.registry
        )
        self.emails_failed = Counter(
            "vectorpanda_emails_failed",
            "Email delivery attempts that failed (each retry counts).",
            registry=self.registry,
        )
        self.emails_quarantined = Counter(
            "vectorpanda_emails_quarantined",
            "Emails given up on (permanent failure or too many attempts); see retry-dead.",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "vectorpanda_dead_letters",
            "Bus messages a consumer gave up on, by queue (recorded with the reason).",
            ["queue"],
            registry=self.registry,
        )
        self._workers = _WorkerCollector()
        self.registry.register(self._workers)
        self._hub: WorkerHub | None = None
        self._router: TenantRouter | None = None
        self._event_log: EventLogProbe | None = None
        # Labelled children of the per-request metrics, looked up once (ops are a fixed set).
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        # Requests the admission gate refused, by (method, status): plain integers it adds
        # to (a flood's refusals must cost next to nothing), folded into
        # vectorpanda_http_requests{route="unmatched"} by ``snapshot`` before each scrape.
        # They are not in the latency histogram.
        self.refused: dict[tuple[str, int], int] = {}
        self._refused_folded: dict[tuple[str, int], int] = {}
        self._frame_children: dict[tuple[str, str], Any] = {}

    def observe_request(self, scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
        """Called by the request middleware once per HTTP request."""
        labels = (route_template(scope), str(scope.get("method", "")), str(status))
        children = self._request_children.get(labels)
        if children is None:  # labels() validates and locks: once per label set, not per request
            children = (self.requests.labels(*labels), self.request_seconds.labels(*labels))
            if len(self._request_children) < MAX_CACHED_LABEL_SETS:
                self._request_children[labels] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_defect(self, scope: MutableMapping[str, Any]) -> None:
        """Called by the request middleware when an exception escaped a handler."""
        self.internal_errors.labels(route_template(scope), str(scope.get("method", ""))).inc()

    def observe_frame(self, op: str, outcome: str, seconds: float) -> None:
        """Called by the router for every frame exchanged with a worker."""
        child = self._frame_children.get((op, outcome))
        if child is None:
            child = self._frame_children[(op, outcome)] = self.frame_seconds.labels(op, outcome)
        child.observe(seconds)

    def count_dead_letter(self, queue: str) -> None:
        self.dead_letters.labels(queue).inc()

    def watch_workers(self, hub: WorkerHub, router: TenantRouter) -> None:
        self._hub, self._router = hub, router
        router.observe_frame = self.observe_frame

    def watch_event_log(self, control_db: Path | Engine, audit_db: Path | Engine) -> None:
        if self._event_log is None:
            self._event_log = EventLogProbe(control_db, audit_db)
            self.registry.register(self._event_log)

    def snapshot(self) -> None:
        """Copy live worker state; call on the event loop, before ``render`` in a thread."""
        self._fold_refused()
        if self._hub is None or self._router is None:
            return
        now = time.monotonic()
        self._workers.workers = [
            WorkerSnapshot(
                worker_id=link.worker_id,
                assigned_tenants=len(self._router.tenants_of(link.worker_id)),
                heartbeat_age_s=round(now - link.last_heartbeat, 3),
                load=_numeric(link.load),
                space=link.space,
            )
            for link in self._hub.live()
        ]
        self._workers.losses = self._hub.losses
        self._workers.fences = self._hub.fences
        self._workers.placement_changes = self._router.placement_changes
        unservable = self._router.unservable
        self._workers.unservable = len(unservable)
        self._workers.unservable_over_bound = unservable.over_bound()
        self._workers.unservable_alerts = unservable.alerts

    def _fold_refused(self) -> None:
        for (method, status), count in list(self.refused.items()):
            new = count - self._refused_folded.get((method, status), 0)
            if new:
                self.requests.labels("unmatched", method, str(status)).inc(new)
                self._refused_folded[(method, status)] = count

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _numeric(load: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in load.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and _FIELD_RE.match(k)
    }

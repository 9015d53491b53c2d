"""``/metrics``: request counts and latency by route template, workers, frames, event lag."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import Stack

pytestmark = pytest.mark.integration


def scrape(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with stack.admin() as http:
        r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_metrics_describe_requests_workers_frames_and_lag(stack: Stack) -> None:
    key = stack.new_client("metrics-acme")
    with stack.client(key) as c:
        assert (
            c.post("/v1/collections", json={"name": "secret-name-x", "dimension": 3}).status_code
            == 201
        )
        vectors = [{"id": "a", "values": [0.1, 0.2, 0.3]}, {"id": "b", "values": [0.3, 0.1, 0.0]}]
        r = c.post("/v1/collections/secret-name-x/upsert", json={"vectors": vectors})
        assert r.status_code == 200, r.text
        r = c.post("/v1/collections/secret-name-x/query", json={"vector": [0.1, 0.2, 0.3]})
        assert r.status_code == 200, r.text
        assert c.get("/v1/collections/no-such-collection").status_code == 404

    samples = scrape(stack)
    upsert = "/v1/collections/{name}/upsert"
    assert (
        value(samples, "vectorpanda_http_requests_total", route=upsert, method="POST", status="200")
        == 1
    )
    count = value(
        samples,
        "vectorpanda_http_request_duration_seconds_count",
        route=upsert,
        method="POST",
        status="200",
    )
    assert count == 1
    assert (
        value(
            samples,
            "vectorpanda_http_request_duration_seconds_sum",
            route=upsert,
            method="POST",
            status="200",
        )
        or 0
    ) > 0
    # errors are counted by template and status, never by the raw path
    assert (
        value(
            samples,
            "vectorpanda_http_requests_total",
            route="/v1/collections/{name}",
            method="GET",
            status="404",
        )
        == 1
    )
    raw = "\n".join(f"{n} {sorted(labels)}" for n, labels in samples)
    assert "secret-name-x" not in raw and "no-such-collection" not in raw

    # workers: both live; the one tenant is assigned to exactly one of them
    assert value(samples, "vectorpanda_workers_live") == 2
    assert total(samples, "vectorpanda_worker_tenants") == 1
    assert len([k for k in samples if k[0] == "vectorpanda_worker_heartbeat_age_seconds"]) == 2
    # the coordinator's view of the worker round trip (includes the WAL fsync for upserts)
    assert (
        value(samples, "vectorpanda_worker_frame_duration_seconds_count", op="upsert", outcome="ok")
        == 1
    )
    assert (
        value(samples, "vectorpanda_worker_frame_duration_seconds_count", op="query", outcome="ok")
        == 1
    )

    # the worker's own WAL fsyncs arrive with its heartbeats (one upsert, at least one fsync)
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(stack)
        fsyncs = [
            v
            for (n, labels), v in samples.items()
            if n == "vectorpanda_worker_load" and ("field", "wal_fsyncs_total") in labels
        ]
        if sum(fsyncs) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(fsyncs) == 2 and sum(fsyncs) >= 1
    assert total(samples, "vectorpanda_worker_load") > 0

    # event lag: the relay drains the outbox and the audit projector catches up
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(stack)
        head = value(samples, "vectorpanda_event_log_head_seq") or 0
        lag = value(samples, "vectorpanda_consumer_lag_events", consumer="audit")
        pending = value(samples, "vectorpanda_relay_pending_events")
        if (head >= 2 and lag == 0 and pending == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert value(samples, "vectorpanda_event_log_probe_up") == 1
    assert head >= 2  # ClientCreated, ApiKeyIssued
    assert pending == 0
    assert value(samples, "vectorpanda_relay_lag_seconds") == 0
    assert lag == 0
    assert value(samples, "vectorpanda_consumer_checkpoint_seq", consumer="audit") == head
    # the notifier's counters exist (they move once the notifier is built)
    assert value(samples, "vectorpanda_emails_sent_total") == 0
    assert value(samples, "vectorpanda_emails_failed_total") == 0


def test_metrics_is_not_in_the_openapi_document(stack: Stack) -> None:
    with stack.admin() as http:
        assert "/metrics" not in http.get("/openapi.json").json()["paths"]


def test_relay_and_consumer_lag_while_nothing_drains(tmp_path) -> None:
    """Without a relay or projector running, lag shows up and is measured in events and age."""
    from prometheus_client import CollectorRegistry, generate_latest

    from coordinator.metrics import EventLogProbe
    from eventlog.events import ClientCreated
    from eventlog.sqlite import open_engine
    from eventlog.store import SqliteEventStore
    from projections.audit_store import AuditProjection

    store = SqliteEventStore(open_engine(tmp_path / "control.sqlite3"))
    projection = AuditProjection.at(tmp_path / "audit.sqlite3")
    events = [
        ClientCreated(client_id=f"c{n}", name=f"C{n}", email="c@x.io", tier="free")
        for n in range(3)
    ]
    store.append(events, "admin", occurred_at="2020-01-01T00:00:00.000000Z")
    projection.apply(store.read(0, 1))
    store.mark_published([1])

    registry = CollectorRegistry()
    registry.register(EventLogProbe(tmp_path / "control.sqlite3", tmp_path / "audit.sqlite3"))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    assert value(samples, "vectorpanda_event_log_probe_up") == 1
    assert value(samples, "vectorpanda_event_log_head_seq") == 3
    assert value(samples, "vectorpanda_relay_pending_events") == 2
    assert (value(samples, "vectorpanda_relay_lag_seconds") or 0) > 3600  # since 2020
    assert value(samples, "vectorpanda_consumer_checkpoint_seq", consumer="audit") == 1
    assert value(samples, "vectorpanda_consumer_lag_events", consumer="audit") == 2
    projection.close()

    missing = CollectorRegistry()
    missing.register(EventLogProbe(tmp_path / "nope.sqlite3", tmp_path / "nope2.sqlite3"))
    assert "vectorpanda_event_log_probe_up 0.0" in generate_latest(missing).decode()
    assert not (tmp_path / "nope.sqlite3").exists()  # a scrape never creates the store

"""Audit tables: what each event becomes, exactly-once application, replay and verify."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eventlog.consumer import CheckpointGap
from eventlog.export import export_lines, verify_export
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from projections.audit_store import AuditProjection, table_digests
from projections.replay import ReplayTargetExists, replay_into, verify_audit
from tests.unit.projections.audit_contract import story

STORY = story(bytes_stored=36)


@pytest.fixture
def log(tmp_path: Path) -> SqliteEventStore:
    store = SqliteEventStore(open_engine(tmp_path / "control.sqlite3"))
    for event in STORY:
        store.append([event], actor="admin")
    return store


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_every_event_lands_in_its_tables(log: SqliteEventStore, tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    assert replay_into(log, db) == len(STORY)
    assert rows(db, "select seq from audit_log order by seq") == [(n,) for n in range(1, 16)]
    assert rows(db, "select summary from audit_log where seq=3") == [
        ("tier changed from free to premium",)
    ]
    assert rows(db, "select change, tier, status from client_history order by seq") == [
        ("created", "free", "active"),
        ("tier_changed", "premium", "active"),
        ("paused", "premium", "paused"),
        ("resumed", "premium", "active"),
        ("deleted", "premium", "deleted"),
    ]
    assert rows(db, "select action from key_history order by seq") == [("issued",), ("revoked",)]
    assert rows(db, "select kind, amount_cents from billing_ledger order by seq") == [
        ("invoice_issued", 4900),
        ("payment_failed", 4900),
        ("payment_received", 4900),
        ("anomaly_detected", None),
    ]
    assert rows(db, "select requests, bytes_stored from usage") == [(10, 36)]
    assert rows(db, "select action from collection_history order by seq") == [
        ("created",),
        ("deleted",),
    ]
    assert rows(db, "select clients from census_index") == [(1,)]
    assert rows(db, "select tier, status, updated_seq from client_state") == [
        ("premium", "deleted", 15)
    ]


def test_redelivered_events_change_nothing(log: SqliteEventStore, tmp_path: Path) -> None:
    projection = AuditProjection.at(tmp_path / "audit.sqlite3")
    events = log.read(limit=100)
    assert projection.apply(events[:5]) == 5
    before = table_digests(projection.engine)
    assert projection.apply(events[:5]) == 5  # a whole batch again
    assert projection.apply(events[2:4]) == 5
    assert table_digests(projection.engine) == before
    with pytest.raises(CheckpointGap):
        projection.apply(events[6:8])  # seq 6 missing
    assert projection.apply(events[3:]) == 15
    assert rows(tmp_path / "audit.sqlite3", "select count(*) from audit_log") == [(15,)]


def test_replay_twice_gives_identical_tables(log: SqliteEventStore, tmp_path: Path) -> None:
    replay_into(log, tmp_path / "a.sqlite3")
    replay_into(log, tmp_path / "b.sqlite3")
    a = table_digests(open_engine(tmp_path / "a.sqlite3"))
    b = table_digests(open_engine(tmp_path / "b.sqlite3"))
    assert a == b and len(a) == 8
    with pytest.raises(ReplayTargetExists):
        replay_into(log, tmp_path / "a.sqlite3")


def tamper(db: Path, seq: int, data: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET data = ? WHERE seq = ?", (data, seq))
    conn.close()


def test_verify_passes_then_names_the_tampered_seq(log: SqliteEventStore, tmp_path: Path) -> None:
    audit = tmp_path / "audit.sqlite3"
    projection = AuditProjection.at(audit)
    projection.apply(log.read(limit=100))
    report = verify_audit(log, audit)
    assert report.ok and report.events == 15 and report.checkpoint == 15
    tamper(
        tmp_path / "control.sqlite3",
        4,
        '{"amount_cents":49,"currency":"EUR","reference":"INV-1"}',
    )
    report = verify_audit(log, audit)
    assert not report.ok
    assert report.first_bad_seq == 4
    reasons = {m.reason for m in report.mismatches if m.seq == 4}
    assert "hash does not match the event's contents" in reasons
    assert "billing_ledger differs from the replay" in reasons


def test_verify_reports_a_live_table_edited_behind_its_back(
    log: SqliteEventStore, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.sqlite3"
    AuditProjection.at(audit).apply(log.read(limit=100))
    with sqlite3.connect(audit) as conn:
        conn.execute("UPDATE key_history SET label = 'x' WHERE seq = 2")
    report = verify_audit(log, audit)
    assert not report.ok and report.first_bad_seq == 2
    assert report.mismatches[0].reason == "key_history differs from the replay"


def test_verify_compares_only_through_the_live_checkpoint(
    log: SqliteEventStore, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.sqlite3"
    AuditProjection.at(audit).apply(log.read(limit=7))  # projections lag behind the log
    report = verify_audit(log, audit)
    assert report.ok and report.checkpoint == 7 and report.events == 15


def test_export_verifies_and_catches_an_edited_line(log: SqliteEventStore) -> None:
    lines = list(export_lines(log, after_seq=3))
    assert len(lines) == 12
    report = verify_export(lines)
    assert report.ok and report.events == 12 and report.head_hash == log.head().hash
    edited = lines[4].replace(b'"actor":"admin"', b'"actor":"mallory"')
    report = verify_export([*lines[:4], edited, *lines[5:]])
    assert not report.ok and report.mismatches[0].seq == 8
    dropped = verify_export([*lines[:4], *lines[5:]])
    assert not dropped.ok and dropped.mismatches[0].seq == 9
    later = list(export_lines(log, since_time=log.read(limit=100)[10].occurred_at))
    assert orjson_seq(later[0]) == 11


def orjson_seq(line: bytes) -> int:
    import orjson

    return int(orjson.loads(line)["seq"])

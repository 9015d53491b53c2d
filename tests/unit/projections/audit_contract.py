"""The audit projection's contract, run on the SQLite file and on PostgreSQL.

A subclass provides ``make_target`` (a fresh place for the audit tables, opened
again by each call as another process would), ``log`` (an event store holding
``STORY``), ``dead_letters_at`` (where a dead-letter book lives) and ``edit``
(a statement run behind the projection's back).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from eventlog.consumer import CheckpointGap
from eventlog.dead_letters import DeadLetterBook
from eventlog.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    BillingAnomalyDetected,
    CensusSnapshotTaken,
    ClientCreated,
    ClientDeleted,
    ClientPaused,
    ClientResumed,
    CollectionCreated,
    CollectionDeleted,
    Event,
    InvoiceIssued,
    PaymentFailed,
    PaymentReceived,
    TierChanged,
    UsageRecorded,
)
from eventlog.store import SqliteEventStore
from projections.audit_checkpoint import record_checkpoint, verify_since_checkpoint
from projections.audit_reads import AuditReader
from projections.audit_store import AuditProjection, AuditTarget, table_digests
from projections.replay import replay_with_digests, verify_audit

C = "c00000000000000aa"
KEY = "0123456789abcdef"


def story(bytes_stored: int = 5 * 2**31) -> list[Event]:
    """One client's whole life, an event of every kind the audit tables take
    (the default ``bytes_stored`` is past int4: the column must hold a real byte count)."""
    return [
        ClientCreated(client_id=C, name="Acme", email="ops@acme.io", tier="free"),
        ApiKeyIssued(client_id=C, key_id=KEY, scopes=("read", "write"), label="ci"),
        TierChanged(client_id=C, from_tier="free", to_tier="premium"),
        InvoiceIssued(client_id=C, amount_cents=4900, currency="EUR", reference="INV-1"),
        PaymentFailed(
            client_id=C, amount_cents=4900, currency="EUR", reference="INV-1", reason="nsf"
        ),
        PaymentReceived(client_id=C, amount_cents=4900, currency="EUR", reference="INV-1"),
        CollectionCreated(client_id=C, name="docs", dimension=3, metric="cosine", index="flat"),
        UsageRecorded(
            client_id=C,
            period_start="2025-01-01T00:00:00Z",
            period_end="2025-01-02T00:00:00Z",
            requests=10,
            queries=5,
            vectors_upserted=3,
            vectors_stored=3,
            bytes_stored=bytes_stored,
        ),
        BillingAnomalyDetected(
            client_id=C, metric="queries", observed=900, baseline=9, window_hours=24
        ),
        ClientPaused(client_id=C, reason="unpaid", automatic=True),
        ClientResumed(client_id=C),
        CollectionDeleted(client_id=C, name="docs"),
        ApiKeyRevoked(client_id=C, key_id=KEY),
        CensusSnapshotTaken(archive="census/1.jsonl.gz", sha256="a" * 64, clients=1),
        ClientDeleted(client_id=C),
    ]


STORY = story()
# "c_z" sorts before "ca" in byte order, after it in most locales' collations:
# client_state's key order (and so its digest) must be byte order on either dialect.
OTHERS = [
    ClientCreated(client_id="ca", name="Beta", email="b@x.io", tier="free"),
    ClientCreated(client_id="c_z", name="Gamma", email="g@x.io", tier="free"),
]


class AuditProjectionContract:
    @pytest.fixture
    def make_target(self) -> Callable[[], AuditTarget]:
        raise NotImplementedError

    @pytest.fixture
    def log(self) -> SqliteEventStore:
        raise NotImplementedError

    @pytest.fixture
    def dead_letters_at(self) -> Path | str:
        raise NotImplementedError

    def test_each_event_is_applied_once_and_a_gap_is_refused(
        self, make_target: Callable[[], AuditTarget], log: SqliteEventStore
    ) -> None:
        projection = AuditProjection.at(make_target())
        events = log.read(limit=100)
        assert projection.apply(events[:5]) == 5
        before = table_digests(projection.engine)
        assert projection.apply(events[:5]) == 5  # a whole batch again
        assert projection.apply(events[2:4]) == 5
        assert table_digests(projection.engine) == before
        with pytest.raises(CheckpointGap):
            projection.apply(events[6:8])  # seq 6 missing
        assert projection.apply(events[3:]) == len(events)
        assert AuditProjection.at(make_target()).checkpoint() == len(events)
        with projection.engine.connect() as conn:
            count = conn.execute(text("SELECT COUNT(*) FROM audit_log")).scalar()
            stored = conn.execute(text("SELECT bytes_stored FROM usage")).scalar()
        assert count == len(events) and stored == 5 * 2**31
        projection.close()

    def test_the_live_tables_digest_as_a_fresh_sqlite_replay_does(
        self,
        make_target: Callable[[], AuditTarget],
        log: SqliteEventStore,
        tmp_path: Path,
    ) -> None:
        projection = AuditProjection.at(make_target())
        projection.apply(log.read(limit=100))
        _, replayed = replay_with_digests(log, tmp_path / "replayed.sqlite3")
        assert table_digests(projection.engine) == replayed
        report = verify_audit(log, make_target())
        assert report.ok and report.checkpoint == report.events == len(STORY) + len(OTHERS)
        projection.close()

    def test_verify_names_a_row_edited_behind_the_projections_back(
        self, make_target: Callable[[], AuditTarget], log: SqliteEventStore
    ) -> None:
        projection = AuditProjection.at(make_target())
        projection.apply(log.read(limit=100))
        with projection.engine.begin() as conn:
            conn.execute(text("UPDATE key_history SET label = 'x' WHERE seq = 4"))
        report = verify_audit(log, make_target())
        assert not report.ok and report.first_bad_seq == 4
        assert report.mismatches[0].reason == "key_history differs from the replay"
        projection.close()

    def test_an_incremental_verify_starts_after_the_recorded_checkpoint(
        self, make_target: Callable[[], AuditTarget], log: SqliteEventStore
    ) -> None:
        projection = AuditProjection.at(make_target())
        projection.apply(log.read(limit=100))
        recorded = record_checkpoint(log, verify_audit(log, make_target()), "test")
        assert recorded is not None
        log.append([ClientPaused(client_id=C, reason="late", automatic=False)], actor="admin")
        projection.apply(log.read(limit=100))
        report = verify_since_checkpoint(log, make_target())
        assert report.ok and report.since_seq == len(STORY) + len(OTHERS)
        assert report.events == 2  # the checkpoint's own event and the pause
        projection.close()

    def test_two_projectors_at_once_project_each_event_once(
        self, make_target: Callable[[], AuditTarget], log: SqliteEventStore
    ) -> None:
        """Two coordinators' projectors fed the same events, in overlapping batches."""
        events = log.read(limit=100)
        projections = [AuditProjection.at(make_target()) for _ in range(2)]
        errors: list[BaseException] = []

        def feed(projection: AuditProjection) -> None:
            try:
                for end in range(1, len(events) + 1):
                    projection.apply(events[max(0, end - 3) : end])
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=feed, args=(p,)) for p in projections]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with projections[0].engine.connect() as conn:
            seqs = [r[0] for r in conn.execute(text("SELECT seq FROM audit_log ORDER BY seq"))]
        assert seqs == [e.seq for e in events]
        assert verify_audit(log, make_target()).ok
        for projection in projections:
            projection.close()

    def test_the_dashboard_reads_the_projected_rows(
        self, make_target: Callable[[], AuditTarget], log: SqliteEventStore
    ) -> None:
        AuditProjection.at(make_target()).apply(log.read(limit=100))
        reader = AuditReader(make_target())
        trail = reader.audit(client_id=C, limit=3)
        # seqs 1-2 are OTHERS; the census (seq 16) names no client
        assert [r.seq for r in trail] == [17, 15, 14]
        assert reader.usage_totals("2025-01-01") == {C: (10, 5)}
        assert [d.day for d in reader.usage_days(C, "2024-12-31")] == ["2025-01-01"]
        assert reader.census()[0]["clients"] == 1
        reader.close()

    def test_the_dead_letter_book_alerts_each_message_once_across_books(
        self, dead_letters_at: Path | str
    ) -> None:
        first, second = DeadLetterBook(dead_letters_at), DeadLetterBook(dead_letters_at)
        assert first.record("q", b"x", "poison: a", 1)[1] is True
        assert second.record("q", b"x", "poison: b", 1)[1] is False  # another coordinator
        assert first.record("other", b"x", "poison: a", 1)[1] is True
        letters = second.all("q")
        assert [(d.reason, d.times, d.body) for d in letters] == [("poison: b", 2, b"x")]
        first.close()
        second.close()


def append_story(store: SqliteEventStore) -> SqliteEventStore:
    for event in [*OTHERS, *STORY]:
        store.append([event], actor="admin")
    return store

"""The SQLite event store: the shared contract plus what only a real file can show."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from tests.unit.eventlog.event_store_contract import EventStoreContract, MakeStore, created

pytestmark = pytest.mark.integration


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "control.sqlite3"


@pytest.fixture
def engines(db_path: Path) -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


@pytest.fixture
def open_store(db_path: Path, engines: list[Engine]):
    def make() -> SqliteEventStore:
        engine = open_engine(db_path)
        engines.append(engine)
        return SqliteEventStore(engine)

    return make


class TestSqliteEventStore(EventStoreContract):
    @pytest.fixture
    def make_store(self, open_store) -> MakeStore:
        return open_store


def raw(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(db_path, isolation_level=None)


def test_update_and_delete_of_events_are_refused(open_store, db_path: Path) -> None:
    store = open_store()
    store.append([created(1), created(2)], actor="admin")
    conn = raw(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events WHERE seq = 2")
    conn.close()
    assert [e.actor for e in store.read()] == ["admin", "admin"]
    assert store.verify_chain().ok


def test_tampered_data_is_reported_at_its_seq(open_store, db_path: Path) -> None:
    store = open_store()
    store.append([created(n) for n in range(20)], actor="admin")
    conn = raw(db_path)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute(
        "UPDATE events SET data = ? WHERE seq = 7",
        ('{"email":"evil@example.com","name":"Client 6","tier":"premium"}',),
    )
    conn.close()
    report = store.verify_chain()
    assert not report.ok
    assert report.events == 20
    assert [m.seq for m in report.mismatches] == [7]
    assert "hash" in report.mismatches[0].reason


def test_tampered_hash_breaks_the_next_link(open_store, db_path: Path) -> None:
    store = open_store()
    store.append([created(n) for n in range(5)], actor="admin")
    conn = raw(db_path)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 3")
    conn.execute("UPDATE events SET hash = ? WHERE seq = 3", ("a" * 64,))
    conn.close()
    report = store.verify_chain()
    assert [m.seq for m in report.mismatches] == [3, 4]


def test_deleted_row_is_reported(open_store, db_path: Path) -> None:
    store = open_store()
    store.append([created(n) for n in range(5)], actor="admin")
    conn = raw(db_path)
    conn.execute("DROP TRIGGER events_no_delete")
    conn.execute("DELETE FROM outbox WHERE seq = 2")
    conn.execute("DELETE FROM events WHERE seq = 2")
    conn.close()
    report = store.verify_chain()
    assert not report.ok and report.mismatches[0].seq == 3
    assert "seq gap" in report.mismatches[0].reason


def test_reformatted_data_is_reported(open_store, db_path: Path) -> None:
    store = open_store()
    store.append([created(1)], actor="admin")
    conn = raw(db_path)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute(
        "UPDATE events SET data = ? WHERE seq = 1",
        ('{"name": "Client 1", "email": "c1@example.com", "tier": "free"}',),
    )
    conn.close()
    assert [m.seq for m in open_store().verify_chain().mismatches] == [1]


def test_durable_pragmas_and_schema(open_store, engines: list[Engine]) -> None:
    open_store()
    with engines[0].connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) > 0
        columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(events)")]
    assert columns == [
        "seq", "event_id", "type", "schema_version", "occurred_at",
        "actor", "client_id", "data", "prev_hash", "hash",
    ]  # fmt: skip


def test_chain_continues_after_reopening(open_store) -> None:
    first = open_store()
    head = first.append([created(1), created(2)], actor="admin")[-1]
    second = open_store()
    (ev,) = second.append([created(3)], actor="admin")
    assert ev.seq == 3 and ev.prev_hash == head.hash
    assert second.verify_chain().ok
    assert [e.seq for e in second.pending_outbox()] == [1, 2, 3]


def test_concurrent_writers_keep_one_valid_chain(open_store) -> None:
    stores = [open_store(), open_store()]  # two engines: two independent writers on one file
    errors: list[BaseException] = []

    def write(store: SqliteEventStore, base: int) -> None:
        try:
            for n in range(40):
                store.append([created(base + n)], actor="admin")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, i * 100)) for i, s in enumerate(stores * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = stores[0].verify_chain()
    assert report.ok and report.events == 160


def test_a_log_made_before_the_client_time_index_gets_it_at_start_up(
    open_store, db_path: Path
) -> None:
    store = open_store()
    store.append([created(1), created(2)], actor="admin")
    conn = raw(db_path)
    # As a log from before the index was (made by create-all, so no Alembic version either).
    conn.execute("DROP INDEX ix_events_client_time")
    conn.execute("DROP TABLE alembic_version")
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
    assert "ix_events_client_time" not in {r[0] for r in conn.execute(indexes)}
    open_store()
    open_store()  # and a second start-up is a no-op
    assert "ix_events_client_time" in {r[0] for r in conn.execute(indexes)}
    reopened = open_store()
    assert [e.seq for e in reopened.client_events(created(1).client_id, "~")] == [1]
    conn.close()

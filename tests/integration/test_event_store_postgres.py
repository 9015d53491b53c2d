"""The event store on PostgreSQL: the shared contract plus what only the server can show."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from eventlog.database import open_control_engine
from eventlog.store import SqliteEventStore
from tests.unit.eventlog.event_store_contract import EventStoreContract, MakeStore, created

pytestmark = pytest.mark.integration


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


@pytest.fixture
def open_store(pg_url: str, engines: list[Engine], tmp_path):
    def make() -> SqliteEventStore:
        engine = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
        engines.append(engine)
        return SqliteEventStore(engine)

    return make


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def make_store(self, open_store) -> MakeStore:
        return open_store


def test_it_really_is_postgresql_with_64_bit_seq(open_store, tmp_path) -> None:
    store = open_store()
    assert not (tmp_path / "unused.sqlite3").exists()
    with store.engine.connect() as conn:
        assert conn.dialect.name == "postgresql"
        kind = conn.execute(
            text(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'events' AND column_name = 'seq'"
            )
        ).scalar()
    assert kind == "bigint"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 2",
        "TRUNCATE events CASCADE",
    ],
)
def test_update_delete_and_truncate_of_events_are_refused(open_store, statement: str) -> None:
    store = open_store()
    store.append([created(1), created(2)], actor="admin")
    with pytest.raises(IntegrityError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert [e.actor for e in store.read()] == ["admin", "admin"]
    assert store.verify_chain().ok and store.verify_chain().events == 2


def test_tampering_past_the_trigger_is_reported_at_its_seq(open_store) -> None:
    store = open_store()
    store.append([created(n) for n in range(10)], actor="admin")
    with store.engine.begin() as conn:  # what only the database owner could do
        conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_no_update"))
        conn.execute(text("UPDATE events SET actor = 'mallory' WHERE seq = 4"))
    report = store.verify_chain()
    assert not report.ok and [m.seq for m in report.mismatches] == [4]


def test_chain_continues_after_reopening_and_schema_install_is_idempotent(open_store) -> None:
    first = open_store()
    head = first.append([created(1), created(2)], actor="admin")[-1]
    second = open_store()  # installs the schema again: a no-op
    (ev,) = second.append([created(3)], actor="admin")
    assert ev.seq == 3 and ev.prev_hash == head.hash
    assert second.verify_chain().ok
    assert [e.seq for e in second.pending_outbox()] == [1, 2, 3]


def test_text_bounds_compare_bytewise_whatever_the_collation(open_store) -> None:
    store = open_store()
    a = created(1)
    store.append([a], actor="admin", occurred_at="2025-01-01T00:00:00.000000Z")
    # "~" sorts after every digit in byte order (SQLite's) but not in most locales.
    assert [e.seq for e in store.client_events(a.client_id, "~")] == [1]

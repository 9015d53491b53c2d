"""The append-only event store: SQLite or PostgreSQL, a hash chain and an outbox.

The records it holds (``StoredEvent``, ``ChainHead``) and the chaining rules are
in ``eventlog.records``; this module is the SQLAlchemy adapter.

Every append also writes one ``outbox`` row per event in the same
transaction; the relay publishes outbox rows in ``seq`` order and deletes them
once the broker confirms. Triggers make the ``events`` table itself
append-only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    select,
)

from eventlog.database import (
    DriverCursor,
    OrderedText,
    is_postgres,
    process_write_lock,
    read_transaction,
    write_transaction,
)
from eventlog.events import Event
from eventlog.hashchain import GENESIS_HASH, ChainReport, ChainRow, verify_rows
from eventlog.records import (
    RECORD_FIELDS,
    ChainHead,
    StoredEvent,
    chain_events_with_data,
    chain_row,
    check_read_args,
)
from eventlog.scan import scan_chain_rows, snapshot_cursor
from eventlog.schema import ensure_schema
from eventlog.sqlite import open_engine

_VERIFY_BATCH = 1000

metadata = MetaData()
# 64-bit on PostgreSQL; on SQLite INTEGER PRIMARY KEY (the rowid) already is.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

events_table = Table(
    "events",
    metadata,
    Column("seq", SeqType, primary_key=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("occurred_at", OrderedText, nullable=False),
    Column("actor", Text, nullable=False),
    Column("client_id", Text, nullable=True),
    Column("data", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Index("ix_events_client_seq", "client_id", "seq"),
    Index("ix_events_type_seq", "type", "seq"),
    # One client's events up to a moment (the history reads) without walking the rest.
    Index("ix_events_client_time", "client_id", "occurred_at"),
    sqlite_autoincrement=True,
)

outbox_table = Table(
    "outbox",
    metadata,
    Column("seq", SeqType, ForeignKey("events.seq"), primary_key=True, autoincrement=False),
)


def _stored(row: Any) -> StoredEvent:
    record = dict(row._mapping)
    record["data"] = orjson.loads(record["data"])
    return StoredEvent(**record)


# The hot statements, on the driver (see eventlog.database.DriverCursor); columns in
# RECORD_FIELDS order, so a row is the record's fields in order.
_COLUMNS = ", ".join(RECORD_FIELDS)
_DATA_AT = RECORD_FIELDS.index("data")
_INSERT_EVENT = (
    f"INSERT INTO events ({_COLUMNS}) "  # noqa: S608  # nosec B608
    f"VALUES ({', '.join('?' for _ in RECORD_FIELDS)})"
)
_INSERT_OUTBOX = "INSERT INTO outbox (seq) VALUES (?)"
_HEAD = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
# Outbox first: scanning events in seq order past every published row would make each
# call cost the length of the whole log.
_PENDING = (
    f"SELECT {_COLUMNS} FROM events "  # noqa: S608  # nosec B608
    "WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?) ORDER BY seq"
)
_MARK_CHUNK = 500


def _stored_tuple(row: tuple[Any, ...]) -> StoredEvent:
    """A row of ``_COLUMNS`` from the driver."""
    values = list(row)
    values[_DATA_AT] = orjson.loads(values[_DATA_AT])
    return StoredEvent(*values)


class SqliteEventSession:
    """The event store bound to one open transaction (shared with the write model)."""

    def __init__(
        self, conn: Connection, head: ChainHead | None = None, driver: DriverCursor | None = None
    ) -> None:
        self._conn = conn
        # The head as of the transaction's last append, when the caller knows it (a group
        # commit's earlier bodies): saves a query per append. Only this session appends.
        self._known_head = head
        self._driver_cursor = driver  # made at the first statement when not given

    def _driver(self) -> DriverCursor:
        if self._driver_cursor is None:
            self._driver_cursor = DriverCursor(self._conn)
        return self._driver_cursor

    def append(
        self, events: Sequence[Event], actor: str, occurred_at: str | None = None
    ) -> list[StoredEvent]:
        """Append in the caller's transaction, which must hold the write lock."""
        head = self._known_head if self._known_head is not None else self.head()
        chained = chain_events_with_data(head, events, actor, occurred_at)
        if not chained:
            return []
        # Driver statements; a batch is one executemany per table.
        rows = []
        for ev, data_json in chained:
            row = [getattr(ev, name) for name in RECORD_FIELDS]
            row[_DATA_AT] = data_json
            rows.append(row)
        driver = self._driver()
        if len(rows) == 1:
            driver.execute(_INSERT_EVENT, rows[0])
            driver.execute(_INSERT_OUTBOX, (rows[0][0],))
        else:
            driver.executemany(_INSERT_EVENT, rows)
            driver.executemany(_INSERT_OUTBOX, [(row[0],) for row in rows])
        stored = [ev for ev, _ in chained]
        self._known_head = ChainHead(stored[-1].seq, stored[-1].hash)
        return stored

    def read(
        self,
        after_seq: int = 0,
        limit: int = 100,
        client_id: str | None = None,
        type: str | None = None,
    ) -> list[StoredEvent]:
        check_read_args(after_seq, limit)
        # Driver statements: the projector and the notifier read every new page.
        sql = f"SELECT {_COLUMNS} FROM events WHERE seq > ?"  # noqa: S608  # nosec B608
        params: list[Any] = [after_seq]
        if client_id is not None:
            sql += " AND client_id = ?"
            params.append(client_id)
        if type is not None:
            sql += " AND type = ?"
            params.append(type)
        params.append(limit)
        rows = self._driver().all(sql + " ORDER BY seq LIMIT ?", params)
        return [_stored_tuple(row) for row in rows]

    def client_events(
        self, client_id: str, until: str, types: Sequence[str] | None = None
    ) -> Iterator[StoredEvent]:
        """One client's events with ``occurred_at <= until`` (as stored text), in seq order.

        Streamed from the cursor, so a long history is never held whole; consume it
        inside the transaction.
        """
        c = events_table.c
        query = select(events_table).where(c.client_id == client_id, c.occurred_at <= until)
        if types is not None:
            query = query.where(c.type.in_(list(types)))
        for row in self._conn.execute(query.order_by(c.seq)):
            yield _stored(row)

    def head(self) -> ChainHead:
        row = self._driver().one(_HEAD)
        return ChainHead(0, GENESIS_HASH) if row is None else ChainHead(int(row[0]), row[1])

    def _chain_rows(self) -> Iterator[ChainRow]:
        # Paged so verifying a long log holds one batch in memory, not the whole table.
        after = 0
        while True:
            query = select(events_table).where(events_table.c.seq > after)
            rows = self._conn.execute(query.order_by(events_table.c.seq).limit(_VERIFY_BATCH))
            batch = [chain_row(row._mapping, row.data) for row in rows]
            if not batch:
                return
            yield from batch
            after = batch[-1].seq

    def verify_chain(self) -> ChainReport:
        return verify_rows(self._chain_rows())

    def pending_outbox(self, limit: int = 100) -> list[StoredEvent]:
        return [_stored_tuple(row) for row in self._driver().all(_PENDING, (limit,))]

    def mark_published(self, seqs: Sequence[int]) -> None:
        driver = self._driver()
        for start in range(0, len(seqs), _MARK_CHUNK):
            chunk = [int(seq) for seq in seqs[start : start + _MARK_CHUNK]]
            marks = ", ".join("?" for _ in chunk)
            driver.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)  # noqa: S608  # nosec B608


class SqliteEventStore:
    """The event store as a standalone object: one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # One writer at a time in-process (shared with every other writer to this database
        # here, the accounts unit of work included); BEGIN IMMEDIATE serialises processes.
        self._write_lock = process_write_lock(engine)
        self._relay_engine: Engine | None = None
        ensure_schema(engine)  # Alembic migrations: eventlog/schema.py

    def append(
        self, events: Sequence[Event], actor: str, occurred_at: str | None = None
    ) -> list[StoredEvent]:
        with self._write_lock, write_transaction(self._engine) as conn:
            return SqliteEventSession(conn).append(events, actor, occurred_at)

    def read(
        self,
        after_seq: int = 0,
        limit: int = 100,
        client_id: str | None = None,
        type: str | None = None,
    ) -> list[StoredEvent]:
        with read_transaction(self._engine) as conn:
            return SqliteEventSession(conn).read(after_seq, limit, client_id, type)

    def client_events(
        self, client_id: str, until: str, types: Sequence[str] | None = None
    ) -> Iterator[StoredEvent]:
        """As ``SqliteEventSession.client_events``, in one read transaction of its own."""
        with read_transaction(self._engine) as conn:
            yield from SqliteEventSession(conn).client_events(client_id, until, types)

    def head(self) -> ChainHead:
        with read_transaction(self._engine) as conn:
            return SqliteEventSession(conn).head()

    @property
    def engine(self) -> Engine:
        """The engine, for audit tools that walk the whole log on a raw cursor."""
        return self._engine

    def verify_chain(self) -> ChainReport:
        with snapshot_cursor(self._engine) as cursor:
            return verify_rows(scan_chain_rows(cursor))

    def pending_outbox(self, limit: int = 100) -> list[StoredEvent]:
        with read_transaction(self._engine) as conn:
            return SqliteEventSession(conn).pending_outbox(limit)

    def _outbox_engine(self) -> Engine:
        database = self._engine.url.database
        if is_postgres(self._engine) or not database or database == ":memory:":
            return self._engine
        if self._relay_engine is None:
            self._relay_engine = open_engine(Path(database), synchronous="NORMAL")
        return self._relay_engine

    def mark_published(self, seqs: Sequence[int]) -> None:
        """Delete published outbox rows, without an fsync of their own.

        A lost delete (power cut before the next durable commit, whose fsync of the
        WAL carries this one too) only publishes those events again, and consumers
        skip duplicates by seq; an fsync here cost every admin action a second one.
        """
        with self._write_lock, write_transaction(self._outbox_engine()) as conn:
            SqliteEventSession(conn).mark_published(seqs)

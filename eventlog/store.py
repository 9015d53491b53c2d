"""The append-only event store: SQLite or PostgreSQL, a hash chain and an outbox.

The records it holds (``StoredEvent``, ``ChainHead``) and the chaining rules are
in ``eventlog.records``; this module is the SQLAlchemy adapter.

Every append also writes one ``outbox`` row per event in the same
transaction; the relay publishes outbox rows in ``seq`` order and deletes them
once the broker confirms. Triggers make the ``events`` table itself
append-only.
"""

from __future__ import annotations

import threading
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
    delete,
    insert,
    select,
)

from eventlog.database import (
    OrderedText,
    is_postgres,
    read_transaction,
    write_transaction,
)
from eventlog.events import Event
from eventlog.hashchain import GENESIS_HASH, ChainReport, ChainRow, canonical_json, verify_rows
from eventlog.records import ChainHead, StoredEvent, chain_events, chain_row, check_read_args
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


class SqliteEventSession:
    """The event store bound to one open transaction (shared with the write model)."""

    def __init__(self, conn: Connection, head: ChainHead | None = None) -> None:
        self._conn = conn
        # The head as of the transaction's last append, when the caller knows it (a group
        # commit's earlier bodies): saves a query per append. Only this session appends.
        self._known_head = head

    def append(
        self, events: Sequence[Event], actor: str, occurred_at: str | None = None
    ) -> list[StoredEvent]:
        """Append in the caller's transaction, which must hold the write lock."""
        head = self._known_head if self._known_head is not None else self.head()
        stored = chain_events(head, events, actor, occurred_at)
        if not stored:
            return stored
        # record(), not dataclasses.asdict: that deep-copies ``data`` and dominated long appends.
        rows = [{**ev.record(), "data": canonical_json(ev.data).decode("utf-8")} for ev in stored]
        # One executemany per table: a batch of events costs two statements, not 2n.
        self._conn.execute(insert(events_table), rows)
        self._conn.execute(insert(outbox_table), [{"seq": ev.seq} for ev in stored])
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
        query = select(events_table).where(events_table.c.seq > after_seq)
        if client_id is not None:
            query = query.where(events_table.c.client_id == client_id)
        if type is not None:
            query = query.where(events_table.c.type == type)
        rows = self._conn.execute(query.order_by(events_table.c.seq).limit(limit))
        return [_stored(row) for row in rows]

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
        query = select(events_table.c.seq, events_table.c.hash)
        row = self._conn.execute(query.order_by(events_table.c.seq.desc()).limit(1)).first()
        return ChainHead(0, GENESIS_HASH) if row is None else ChainHead(row.seq, row.hash)

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
        # Outbox first: scanning events in seq order past every published row
        # would make each call cost the length of the whole log.
        oldest = select(outbox_table.c.seq).order_by(outbox_table.c.seq).limit(limit)
        query = (
            select(events_table)
            .where(events_table.c.seq.in_(oldest.scalar_subquery()))
            .order_by(events_table.c.seq)
        )
        return [_stored(row) for row in self._conn.execute(query)]

    def mark_published(self, seqs: Sequence[int]) -> None:
        if seqs:
            self._conn.execute(delete(outbox_table).where(outbox_table.c.seq.in_(list(seqs))))


class SqliteEventStore:
    """The event store as a standalone object: one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # One writer at a time in-process; BEGIN IMMEDIATE serialises across processes.
        self._write_lock = threading.Lock()
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

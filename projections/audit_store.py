"""The audit database adapter: applies folded events with their checkpoint, atomically.

The audit tables live in their own SQLite file (``audit.sqlite3``) with the embedded
default, or in the PostgreSQL control database when ``VP_DATABASE_URL`` names one
(created there by migration 0003). What differs between the two is decided in
eventlog: a projector's write transaction is the audit checkpoint's
``consumer_transaction``, and verify and the digests read one snapshot through
``eventlog.scan.snapshot_cursors``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, select

from eventlog import sqlite
from eventlog.consumer import CheckpointGap
from eventlog.database import DriverCursor, consumer_transaction, is_postgres, read_transaction
from eventlog.events import ClientCreated
from eventlog.records import StoredEvent
from eventlog.scan import snapshot_cursor
from eventlog.schema import ensure_schema
from projections.digests import digests_on
from projections.fold import ClientState, fold
from projections.tables import PROJECTED, key_history, metadata

AUDIT_CONSUMER = "audit"
_TABLES: dict[str, Table] = {t.name: t for t in PROJECTED}
# Where the audit tables are: the SQLite file's path, or an engine on the PostgreSQL
# control database.
AuditTarget = Path | Engine


def open_audit_engine(target: AuditTarget) -> Engine:
    if isinstance(target, Engine):
        return target
    # A lost last commit after power loss takes its checkpoint with it and is
    # simply applied again, so FULL fsync buys nothing here.
    return sqlite.open_engine(target, synchronous="NORMAL")


class AuditProjection:
    """The audit tables of one database, fed in seq order, each event exactly once."""

    def __init__(self, engine: Engine, name: str = AUDIT_CONSUMER) -> None:
        self.name = name
        self.engine = engine
        self._write_lock = threading.Lock()
        if is_postgres(engine):
            ensure_schema(engine)  # the tables come with the control database's revisions
            return
        with self._write_lock, sqlite.write_transaction(engine) as conn:
            metadata.create_all(conn)
            sqlite.add_missing_columns(conn, key_history)

    @classmethod
    def at(cls, target: AuditTarget, name: str = AUDIT_CONSUMER) -> AuditProjection:
        return cls(open_audit_engine(target), name)

    def checkpoint(self) -> int:
        with read_transaction(self.engine) as conn:
            return _checkpoint(conn, self.name)

    def apply(self, events: Sequence[StoredEvent]) -> int:
        """Apply the events after the checkpoint and move it, in one transaction."""
        # One projector writes at a time, in every process sharing the audit tables: on
        # PostgreSQL the checkpoint's own lock (apart from the appends' write lock, so
        # projecting never holds up an admin action), taken before the checkpoint is
        # read, so two coordinators' projectors never apply the same event twice.
        with self._write_lock, consumer_transaction(self.engine, self.name) as conn:
            # Driver statements throughout: the projector runs after every admin action,
            # in the same process, and Core cost more per event than the fold itself.
            driver = DriverCursor(conn)
            cp = _checkpoint(driver, self.name)
            todo = [e for e in events if e.seq > cp]
            if not todo:
                return cp
            states: dict[str, ClientState | None] = {}
            rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for expected, stored in enumerate(todo, start=cp + 1):
                if stored.seq != expected:
                    raise CheckpointGap(cp, stored.seq)
                cid = stored.client_id
                # A created client has no earlier state to load.
                if (
                    cid is not None
                    and cid not in states
                    and stored.type != ClientCreated.event_type
                ):
                    states[cid] = _load_state(driver, cid)
                effects = fold(stored, states.get(cid) if cid is not None else None)
                for table, row in effects.rows:
                    rows[table].append(row)
                if effects.state is not None:
                    states[effects.state.client_id] = effects.state
            for table, batch in rows.items():
                _insert_rows(driver, table, batch)
            changed = [s for s in states.values() if s is not None and s.updated_seq > cp]
            if changed:
                driver.executemany(_UPSERT_STATE, [_state_row(s) for s in changed])
            new_cp = todo[-1].seq
            driver.execute(_UPSERT_CHECKPOINT, (self.name, new_cp))
            return new_cp

    def close(self) -> None:
        self.engine.dispose()


_CHECKPOINT = "SELECT seq FROM checkpoints WHERE consumer = ?"
_UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (consumer, seq) VALUES (?, ?) "
    "ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq"
)
_STATE_COLUMNS = ("client_id", "name", "email", "tier", "status", "updated_seq")
_LOAD_STATE = (
    "SELECT client_id, name, email, tier, status, updated_seq FROM client_state WHERE client_id = ?"
)
_UPSERT_STATE = (
    "INSERT INTO client_state (client_id, name, email, tier, status, updated_seq) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET "
    "tier = excluded.tier, status = excluded.status, updated_seq = excluded.updated_seq"
)


def _checkpoint(conn: Connection | DriverCursor, name: str) -> int:
    driver = conn if isinstance(conn, DriverCursor) else DriverCursor(conn)
    row = driver.one(_CHECKPOINT, (name,))
    return 0 if row is None else int(row[0])


def _load_state(driver: DriverCursor, client_id: str) -> ClientState | None:
    row = driver.one(_LOAD_STATE, (client_id,))
    return None if row is None else ClientState(*row)


def _state_row(state: ClientState) -> tuple[Any, ...]:
    return tuple(getattr(state, f) for f in _STATE_COLUMNS)


def _insert_rows(driver: DriverCursor, table: str, batch: list[dict[str, Any]]) -> None:
    """Insert the fold's rows of one table, in order; one executemany per run of rows
    that name the same columns (as Core's executemany, which takes the first row's)."""
    known = _TABLES[table].columns
    start = 0
    while start < len(batch):
        columns = tuple(batch[start])
        end = start + 1
        while end < len(batch) and tuple(batch[end]) == columns:
            end += 1
        if any(c not in known for c in columns):  # names come from the fold, never input
            raise ValueError(f"unknown column in {table}: {columns}")
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608  # nosec B608
        driver.executemany(sql, [tuple(row[c] for c in columns) for row in batch[start:end]])
        start = end


def _key_of(table: Table) -> list[Any]:
    return list(table.primary_key.columns)


def table_rows(conn: Connection, table: Table) -> list[dict[str, Any]]:
    """Every row of a projected table, in primary-key order."""
    return [
        {str(k): v for k, v in r._asdict().items()}
        for r in conn.execute(select(table).order_by(*_key_of(table)))
    ]


def table_digests(engine: Engine) -> dict[str, str]:
    """SHA-256 of each projected table's rows in key order: equal digests, equal contents.

    Streams each table off a raw cursor, so a table of millions of rows costs a page
    of memory, not the table.
    """
    with snapshot_cursor(engine) as cursor:
        return digests_on(cursor)

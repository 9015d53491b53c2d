"""The audit database adapter: applies folded events with their checkpoint, atomically."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from eventlog.consumer import CheckpointGap
from eventlog.events import ClientCreated
from eventlog.records import StoredEvent
from eventlog.sqlite import add_missing_columns, open_engine, read_transaction, write_transaction
from projections.digests import digests_on
from projections.fold import ClientState, fold
from projections.tables import PROJECTED, checkpoints, client_state, key_history, metadata

AUDIT_CONSUMER = "audit"
_TABLES: dict[str, Table] = {t.name: t for t in PROJECTED}


def open_audit_engine(path: Path) -> Engine:
    # A lost last commit after power loss takes its checkpoint with it and is
    # simply applied again, so FULL fsync buys nothing here.
    return open_engine(path, synchronous="NORMAL")


class AuditProjection:
    """The audit tables of one database, fed in seq order, each event exactly once."""

    def __init__(self, engine: Engine, name: str = AUDIT_CONSUMER) -> None:
        self.name = name
        self.engine = engine
        self._write_lock = threading.Lock()
        with self._write_lock, write_transaction(engine) as conn:
            metadata.create_all(conn)
            add_missing_columns(conn, key_history)

    @classmethod
    def at(cls, path: Path, name: str = AUDIT_CONSUMER) -> AuditProjection:
        return cls(open_audit_engine(path), name)

    def checkpoint(self) -> int:
        with read_transaction(self.engine) as conn:
            return _checkpoint(conn, self.name)

    def apply(self, events: Sequence[StoredEvent]) -> int:
        """Apply the events after the checkpoint and move it, in one transaction."""
        with self._write_lock, write_transaction(self.engine) as conn:
            cp = _checkpoint(conn, self.name)
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
                    states[cid] = _load_state(conn, cid)
                effects = fold(stored, states.get(cid) if cid is not None else None)
                for table, row in effects.rows:
                    rows[table].append(row)
                if effects.state is not None:
                    states[effects.state.client_id] = effects.state
            for table, batch in rows.items():
                conn.execute(insert(_TABLES[table]), batch)
            changed = [s for s in states.values() if s is not None and s.updated_seq > cp]
            if changed:
                stmt = sqlite_insert(client_state)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["client_id"],
                        set_={c: stmt.excluded[c] for c in ("tier", "status", "updated_seq")},
                    ),
                    [_state_row(s) for s in changed],
                )
            new_cp = todo[-1].seq
            stmt = sqlite_insert(checkpoints).values(consumer=self.name, seq=new_cp)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["consumer"], set_={"seq": new_cp})
            )
            return new_cp

    def close(self) -> None:
        self.engine.dispose()


def _checkpoint(conn: Connection, name: str) -> int:
    row = conn.execute(select(checkpoints.c.seq).where(checkpoints.c.consumer == name)).first()
    return 0 if row is None else int(row.seq)


def _load_state(conn: Connection, client_id: str) -> ClientState | None:
    row = conn.execute(select(client_state).where(client_state.c.client_id == client_id)).first()
    return None if row is None else ClientState(**row._mapping)


def _state_row(state: ClientState) -> dict[str, Any]:
    return {f: getattr(state, f) for f in ClientState.__dataclass_fields__}


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
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN DEFERRED")
        out = digests_on(cursor)
        cursor.execute("COMMIT")
    finally:
        raw.close()
    return out

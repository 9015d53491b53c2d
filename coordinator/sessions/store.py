"""Where dashboard sessions live: SQLAlchemy in production, a dict in tests.

Production keeps them in ``<data>/sessions.sqlite3``, or, when ``VP_DATABASE_URL``
names PostgreSQL, in that database's ``dashboard_sessions`` table (made by the
control database's migrations), so a login on one coordinator is a login on all.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Engine,
    Float,
    MetaData,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from coordinator.sessions.model import Role, Session, SessionKind
from eventlog.database import is_postgres, open_local_engine, read_transaction, row_transaction

metadata = MetaData()

sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id_hash", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("email", Text),
    Column("role", Text),
    Column("client_id", Text),
    Column("provider", Text),
    Column("state", Text),
    Column("code_verifier", Text),
    Column("nonce", Text),
)


class SessionStore(Protocol):
    """Blocking calls; the dashboard runs them in a thread."""

    def add(self, session: Session) -> None: ...
    def get(self, id_hash: str) -> Session | None: ...
    def touch(self, id_hash: str, now: float) -> None: ...
    def take(self, id_hash: str) -> Session | None:
        """Delete and return the session: a login's state can be used once only."""
        ...

    def delete(self, id_hash: str) -> bool: ...
    def purge(self, older_than: float) -> int: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


def _row(session: Session) -> dict[str, Any]:
    row = asdict(session)
    row["kind"] = session.kind.value
    row["role"] = session.role.value if session.role else None
    return row


def _session(row: Any) -> Session:
    data = dict(row._mapping)
    data["kind"] = SessionKind(data["kind"])
    data["role"] = Role(data["role"]) if data["role"] else None
    return Session(**data)


class SqliteSessionStore:
    """Sessions in ``<data>/sessions.sqlite3`` (apart from the event store) or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        if not is_postgres(engine):  # on PostgreSQL the table is the migrations' (0002)
            with row_transaction(engine) as conn:
                metadata.create_all(conn)

    @classmethod
    def at(cls, path: Path) -> SqliteSessionStore:
        # Losing the last session write on power loss only logs someone out.
        return cls(open_local_engine(path, synchronous="NORMAL"))

    def add(self, session: Session) -> None:
        with self._lock, row_transaction(self.engine) as conn:
            conn.execute(insert(sessions).values(**_row(session)))

    def get(self, id_hash: str) -> Session | None:
        with read_transaction(self.engine) as conn:
            row = conn.execute(select(sessions).where(sessions.c.id_hash == id_hash)).first()
        return None if row is None else _session(row)

    def touch(self, id_hash: str, now: float) -> None:
        with self._lock, row_transaction(self.engine) as conn:
            conn.execute(
                update(sessions).where(sessions.c.id_hash == id_hash).values(last_seen_at=now)
            )

    def take(self, id_hash: str) -> Session | None:
        # One statement: of two coordinators taking the same login state, one gets it.
        query = delete(sessions).where(sessions.c.id_hash == id_hash).returning(*sessions.c)
        with self._lock, row_transaction(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else _session(row)

    def delete(self, id_hash: str) -> bool:
        with self._lock, row_transaction(self.engine) as conn:
            gone = conn.execute(delete(sessions).where(sessions.c.id_hash == id_hash))
        return bool(gone.rowcount)

    def purge(self, older_than: float) -> int:
        """Remove sessions not seen since ``older_than`` (epoch seconds)."""
        with self._lock, row_transaction(self.engine) as conn:
            gone = conn.execute(delete(sessions).where(sessions.c.last_seen_at < older_than))
        return int(gone.rowcount)

    def count(self) -> int:
        with read_transaction(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(sessions)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


class MemorySessionStore:
    """The same contract in a dict, for unit tests."""

    def __init__(self) -> None:
        self._rows: dict[str, Session] = {}
        self._lock = threading.Lock()

    def add(self, session: Session) -> None:
        with self._lock:
            if session.id_hash in self._rows:
                raise KeyError("session id collision")
            self._rows[session.id_hash] = session

    def get(self, id_hash: str) -> Session | None:
        return self._rows.get(id_hash)

    def touch(self, id_hash: str, now: float) -> None:
        with self._lock:
            found = self._rows.get(id_hash)
            if found is not None:
                self._rows[id_hash] = replace(found, last_seen_at=now)

    def take(self, id_hash: str) -> Session | None:
        with self._lock:
            return self._rows.pop(id_hash, None)

    def delete(self, id_hash: str) -> bool:
        with self._lock:
            return self._rows.pop(id_hash, None) is not None

    def purge(self, older_than: float) -> int:
        with self._lock:
            stale = [k for k, s in self._rows.items() if s.last_seen_at < older_than]
            for k in stale:
                del self._rows[k]
            return len(stale)

    def count(self) -> int:
        return len(self._rows)

    def close(self) -> None:
        self._rows.clear()

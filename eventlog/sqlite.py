"""SQLite engine for the control database: durable pragmas and serialised writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event

BUSY_TIMEOUT_MS = 10_000
_BEGIN_OPTION = "vp_sqlite_begin"


def open_engine(
    path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, synchronous: str = "FULL"
) -> Engine:
    """An engine on ``path`` (created if missing); nothing connects until first use."""
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError("synchronous must be FULL or NORMAL")
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite+pysqlite:///{path}",
        connect_args={"check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN would defeat BEGIN IMMEDIATE; we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """BEGIN IMMEDIATE: take the write lock up front so read-then-write never deadlocks."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A deferred transaction: one consistent snapshot under WAL, no write lock."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
        with conn.begin():
            yield conn


def add_missing_columns(conn: Connection, table: Table) -> list[str]:
    """Upgrade a table in place: add each nullable column of ``table`` the file lacks.

    ``create_all`` creates missing tables but never alters existing ones, so a
    column added to a table definition reaches databases made before it here.
    Returns the names of the columns added.
    """
    present = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table.name})")}
    added = []
    for column in table.columns:
        if column.name in present:
            continue
        if not column.nullable:
            raise RuntimeError(f"{table.name}.{column.name} is missing and not nullable")
        kind = column.type.compile(dialect=conn.dialect)
        # Names and types come from our own table definitions, never from input.
        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")  # nosec B608
        added.append(column.name)
    return added

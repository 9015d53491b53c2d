"""The control database adapter: every SQLite/PostgreSQL difference lives here.

The event store, the accounts write model and the outbox run one code path
through SQLAlchemy Core; what differs between the embedded SQLite file and a
PostgreSQL server (how a write transaction serialises, snapshot reads, the
append-only triggers, in-place column upgrades) is decided in this module.

Writes are serialised the same way on both: SQLite takes its write lock up
front (BEGIN IMMEDIATE); PostgreSQL takes one transaction-level advisory lock
(``pg_advisory_xact_lock``) as the first statement of a READ COMMITTED
transaction, so any number of processes on any number of hosts append one at a
time, each reading the chain head only once it holds the lock: ``seq`` stays
gap-free and the hash chain unbroken.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import TEXT, Connection, Engine, Table, Text, create_engine, inspect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from eventlog import sqlite

# One arbitrary 64-bit key, "VPCTRL01" in ASCII: the control database's write lock.
WRITE_LOCK_KEY = 0x56504354524C3031
_PG_DRIVER = "postgresql+psycopg"

# Text that is ordered or range-compared (timestamps, names): byte order on PostgreSQL,
# as SQLite compares, whatever the database's default collation. (``TEXT`` is the type
# ``sqlalchemy.dialects.postgresql.TEXT`` names; that dialect, about 2.3 MiB, is
# imported only by a process on PostgreSQL.)
OrderedText = Text().with_variant(TEXT(collation="C"), "postgresql")

_PG_APPEND_ONLY = (
    "CREATE OR REPLACE FUNCTION vp_events_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'events are append-only' "
    "USING ERRCODE = 'integrity_constraint_violation'; END $$",
    "CREATE OR REPLACE TRIGGER events_no_update BEFORE UPDATE ON events "
    "FOR EACH ROW EXECUTE FUNCTION vp_events_append_only()",
    "CREATE OR REPLACE TRIGGER events_no_delete BEFORE DELETE ON events "
    "FOR EACH ROW EXECUTE FUNCTION vp_events_append_only()",
    "CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION vp_events_append_only()",
)
_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
)


class DatabaseUrlError(ValueError):
    """``VP_DATABASE_URL`` names no database this control plane can run on."""


def postgres_url(url: str) -> str:
    """``url`` with the psycopg (v3) driver; raises DatabaseUrlError for anything else.

    Accepts ``postgresql://``, ``postgres://`` and ``postgresql+psycopg://``. The
    message never repeats the URL: it may hold a password.
    """
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError:
        raise DatabaseUrlError("VP_DATABASE_URL is not a database URL") from None
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseUrlError("VP_DATABASE_URL must name a PostgreSQL database")
    if parsed.get_driver_name() not in ("psycopg", "psycopg2", "") or not parsed.database:
        raise DatabaseUrlError("VP_DATABASE_URL must be postgresql://user@host:port/database")
    return parsed.set(drivername=_PG_DRIVER).render_as_string(hide_password=False)


def open_control_engine(url: str | None, sqlite_path: Path) -> Engine:
    """PostgreSQL when ``url`` is set, else the SQLite file at ``sqlite_path`` as always."""
    if not url:
        return sqlite.open_engine(sqlite_path)
    return create_engine(
        postgres_url(url),
        # Writes rely on it (see write_transaction), whatever the server's default.
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        # Bound values (key digests, emails) stay out of error messages and logs.
        hide_parameters=True,
    )


def open_local_engine(path: Path, *, synchronous: str = "FULL") -> Engine:
    """An SQLite file of a component's own (sessions, a notifier file): durable pragmas."""
    return sqlite.open_engine(path, synchronous=synchronous)


def is_postgres(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def process_write_lock(engine: Engine) -> threading.Lock:
    """The one lock this process's writers to ``engine``'s database take first.

    The accounts unit of work, the event store and the relay's outbox deletes each
    open their own engine on the control database. Holding this lock around their
    write transactions, they queue here for one another instead of on SQLite's busy
    handler, which sleeps between retries (1, 2, 5, 10 ms...): a group commit that
    met the relay's delete in the lock lost milliseconds each time. Other processes
    are still serialised by the database itself (BEGIN IMMEDIATE, the advisory lock).
    """
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        key = str(Path(database).resolve())
    else:
        key = engine.url.render_as_string(hide_password=True)
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.get(key)
        if lock is None:
            lock = _WRITE_LOCKS[key] = threading.Lock()
        return lock


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One writer at a time across every process sharing the database."""
    if not is_postgres(engine):
        with sqlite.write_transaction(engine) as conn:
            yield conn
        return
    with engine.connect() as conn, conn.begin():
        # First statement: nothing is read before the lock is held, and READ COMMITTED
        # gives every later statement a snapshot taken after it was granted.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
        yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """One consistent snapshot, no write lock."""
    if not is_postgres(engine):
        with sqlite.read_transaction(engine) as conn:
            yield conn
        return
    with engine.connect() as conn, conn.begin():
        # First statement of the transaction: its snapshot holds for every later one.
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield conn


@lru_cache(maxsize=256)
def _format_paramstyle(sql: str) -> str:
    return sql.replace("?", "%s")


class DriverCursor:
    """The write path's few hot statements, on the driver under ``conn``, in its transaction.

    A row by key, an update, the appends and the savepoints run here instead of
    through SQLAlchemy Core: Core spends 0.1-0.3 ms of CPU per statement (building
    the statement, its cache key, the execution context, the result) where the
    driver needs a few microseconds, and an admin action is five or six statements.
    SQL is written with ``?`` placeholders (SQLite's), turned into ``%s`` for
    psycopg on PostgreSQL; it must hold no other ``?``. Errors are the driver's own
    (``sqlite3.OperationalError``, ``psycopg.OperationalError``), not SQLAlchemy's.
    """

    def __init__(self, conn: Connection) -> None:
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:  # pragma: no cover - an open Connection always has one
            raise RuntimeError("the connection is closed")
        self._cursor = dbapi.cursor()
        self._postgres = is_postgres(conn)

    def _sql(self, sql: str) -> str:
        return _format_paramstyle(sql) if self._postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(self._sql(sql), rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a query (a plain tuple), or None."""
        self._cursor.execute(self._sql(sql), params)
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a query, as plain tuples."""
        self._cursor.execute(self._sql(sql), params)
        return [tuple(row) for row in self._cursor.fetchall()]

    # One savepoint name is enough: savepoints here are never nested.
    def savepoint(self) -> None:
        self._cursor.execute("SAVEPOINT vp_body")

    def release(self) -> None:
        self._cursor.execute("RELEASE SAVEPOINT vp_body")

    def rollback_to_savepoint(self) -> None:
        """Undo what was done since ``savepoint()`` (the transaction goes on)."""
        self._cursor.execute("ROLLBACK TO SAVEPOINT vp_body")
        self._cursor.execute("RELEASE SAVEPOINT vp_body")


def install_append_only(conn: Connection) -> None:
    """Triggers that refuse UPDATE and DELETE (and TRUNCATE) of ``events``; idempotent."""
    for ddl in _PG_APPEND_ONLY if is_postgres(conn) else _SQLITE_APPEND_ONLY:
        conn.exec_driver_sql(ddl)


def add_missing_columns(conn: Connection, table: Table) -> list[str]:
    """Add each nullable column of ``table`` the database lacks (either dialect)."""
    if not is_postgres(conn):
        return sqlite.add_missing_columns(conn, table)
    present = {c["name"] for c in inspect(conn).get_columns(table.name)}
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


# The class of the per-consumer transaction locks (pg_advisory_xact_lock(int4, int4)):
# "VPCK" in ASCII; the second key is the consumer name's hashtext.
CONSUMER_LOCK_CLASS = 0x5650434B


@contextmanager
def row_transaction(engine: Engine) -> Iterator[Connection]:
    """A short write on rows of its own (sessions, mail rows): no global write lock.

    SQLite still takes its one write lock up front (BEGIN IMMEDIATE); on PostgreSQL a
    plain READ COMMITTED transaction, so these writes never queue behind appends.
    """
    if not is_postgres(engine):
        with sqlite.write_transaction(engine) as conn:
            yield conn
        return
    with engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def consumer_transaction(engine: Engine, consumer: str) -> Iterator[Connection]:
    """One writer per consumer checkpoint across every process sharing the database."""
    if not is_postgres(engine):
        with sqlite.write_transaction(engine) as conn:
            yield conn
        return
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (CONSUMER_LOCK_CLASS, consumer)
        )
        yield conn


def _postgresql() -> Any:
    """SQLAlchemy's PostgreSQL dialect module (loaded already by an engine on it)."""
    from sqlalchemy.dialects import postgresql

    return postgresql


def insert_ignoring_conflicts(conn: Engine | Connection, table: Table) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` (SQLite's INSERT OR IGNORE) in this dialect."""
    dialect = _postgresql() if is_postgres(conn) else sqlite_dialect
    return dialect.insert(table).on_conflict_do_nothing()


def upsert(conn: Connection, table: Table, keys: list[str], row: dict[str, Any]) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE`` setting every other column of ``row``."""
    dialect = _postgresql() if is_postgres(conn) else sqlite_dialect
    stmt = dialect.insert(table).values(**row)
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={k: stmt.excluded[k] for k in row if k not in keys}
    )

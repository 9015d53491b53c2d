"""Walk the events table in bounded keyset pages on a raw DB-API cursor.

Audit work reads every row once; SQLAlchemy Core's per-row cost dominated a
million-event walk, so this reads tuples straight from sqlite3, one page of
``batch`` rows at a time (``WHERE seq > ? ORDER BY seq LIMIT ?``), inside one
read transaction so the whole walk sees one snapshot of the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from eventlog.hashchain import ChainReport, ChainRow, verify_rows
from eventlog.records import RECORD_FIELDS

SCAN_BATCH = 5000
# The record's fields in order, which is also ChainRow's (``data`` read as its stored text).
_COLUMNS = ", ".join(RECORD_FIELDS)

# A constant column list; every value is bound.
_PAGE_SQL = f"SELECT {_COLUMNS} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"  # noqa: S608  # nosec B608
_LAST_OF_TYPE_SQL = f"SELECT {_COLUMNS} FROM events WHERE type = ? ORDER BY seq DESC LIMIT 1"  # noqa: S608  # nosec B608


class _QmarkCursor:
    """A psycopg cursor that takes this module's ``?`` placeholders (PostgreSQL's are %s)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Any = None) -> Any:
        return self._cursor.execute(sql.replace("?", "%s"), params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    def fetchmany(self, size: int) -> list[Any]:
        return list(self._cursor.fetchmany(size))

    def close(self) -> None:
        self._cursor.close()


@contextmanager
def snapshot_cursors(engine: Engine) -> Iterator[Callable[[], Any]]:
    """One read-only snapshot of ``engine``'s database; yields a maker of raw DB-API
    cursors on it (``?`` placeholders on either dialect), for readers that interleave."""
    raw = engine.raw_connection()
    try:
        first = raw.cursor()
        if engine.dialect.name == "postgresql":
            # The driver has begun a transaction implicitly; this is its first statement.
            first.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            try:
                yield lambda: _QmarkCursor(raw.cursor())
            finally:
                raw.rollback()
            return
        first.execute("BEGIN DEFERRED")
        try:
            yield raw.cursor
        finally:
            first.execute("COMMIT")
    finally:
        raw.close()


@contextmanager
def snapshot_cursor(engine: Engine) -> Iterator[Any]:
    """A raw cursor inside one read transaction (a consistent snapshot of the log)."""
    with snapshot_cursors(engine) as cursor:
        yield cursor()


def scan_chain_rows(
    cursor: Any, after_seq: int = 0, through_seq: int | None = None, batch: int = SCAN_BATCH
) -> Iterator[ChainRow]:
    """Rows with ``after_seq < seq <= through_seq`` in seq order, ``batch`` at a time."""
    last = after_seq
    limit = through_seq if through_seq is not None else (1 << 62)
    while True:
        cursor.execute(
            _PAGE_SQL,
            (last, limit, batch),
        )
        page = cursor.fetchall()
        if not page:
            return
        for row in page:
            yield ChainRow(*row)
        last = page[-1][0]


def row_at(cursor: Any, seq: int) -> tuple[int, str] | None:
    """(seq, hash) of the event at ``seq``, or None when the log has no such row."""
    cursor.execute("SELECT seq, hash FROM events WHERE seq = ?", (seq,))
    found = cursor.fetchone()
    return None if found is None else (int(found[0]), str(found[1]))


def last_of_type(cursor: Any, event_type: str) -> ChainRow | None:
    """The newest event of ``event_type`` (the type index makes this one seek)."""
    cursor.execute(_LAST_OF_TYPE_SQL, (event_type,))
    found = cursor.fetchone()
    return None if found is None else ChainRow(*found)


def head_row(cursor: Any) -> tuple[int, str] | None:
    cursor.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
    found = cursor.fetchone()
    return None if found is None else (int(found[0]), str(found[1]))


def verify_range(db_path: str, after_seq: int, prev_hash: str, through_seq: int) -> ChainReport:
    """The chain after ``after_seq`` through ``through_seq``, on a connection of its own.

    Picklable and self-contained, so an audit can run it in a second process while
    the first folds the same rows.
    """
    from eventlog.sqlite import open_engine

    engine = open_engine(Path(db_path))
    try:
        with snapshot_cursor(engine) as cursor:
            rows = scan_chain_rows(cursor, after_seq, through_seq)
            return verify_rows(rows, after_seq, prev_hash)
    finally:
        engine.dispose()

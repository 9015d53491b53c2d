"""The writing half of a replay: folded rows into a fresh audit database.

``ReplayWriter`` inserts batches of row tuples (one transaction per batch),
digests them as they go, and at the end writes the current states, builds
the secondary indexes once over the full tables and makes the file durable.
For a long log it runs in a second process (``WriterProcess``) fed through a
pipe, so one core folds the log while the other writes and hashes.
"""

from __future__ import annotations

import marshal
import multiprocessing
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import Table

from projections.audit_store import AUDIT_CONSUMER, AuditProjection
from projections.digests import RowDigest
from projections.tables import PROJECTED, client_state

# Rows arrive in seq order and the indexes are built at the end: a small cache will do,
# and keeps this process (with the folding one) well under 300 MB on a 1M-event log.
_CACHE_KIB = 16 * 1024
_TABLES: dict[str, Table] = {t.name: t for t in PROJECTED}
Rows = dict[str, list[tuple[Any, ...]]]


def _insert_sql(table: Table) -> str:
    cols = [c.name for c in table.columns]
    marks = ", ".join("?" * len(cols))
    # Names come from our own table definitions, values are bound.
    return f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({marks})"  # noqa: S608  # nosec B608


def _drop_indexes(cursor: Any) -> list[str]:
    """Drop the projected tables' secondary indexes; their DDL, to build them at the end.

    Building an index once over a finished table is a sort; keeping it up to date row
    by row, in client order, costs the replay more.
    """
    cursor.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'")
    found = [(name, ddl) for name, table, ddl in cursor.fetchall() if ddl and table in _TABLES]
    for name, _ in found:
        cursor.execute(f'DROP INDEX "{name}"')
    return [str(ddl) for _, ddl in found]


class ReplayWriter:
    """Writes folded rows, in seq order, into the fresh audit database at ``path``."""

    def __init__(self, path: Path, digest: bool) -> None:
        self._projection = AuditProjection.at(path)
        self._raw = self._projection.engine.raw_connection()
        self._out = self._raw.cursor()
        self._inserts = {name: _insert_sql(t) for name, t in _TABLES.items()}
        self._digests = {name: RowDigest(t) for name, t in _TABLES.items()} if digest else None
        self._indexes = _drop_indexes(self._out)
        # A half-written replay is worthless (and refused as a target), so skip the
        # per-commit fsync and make the finished file durable once, at the end.
        self._out.execute("PRAGMA synchronous=OFF")
        self._out.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._out.execute("BEGIN IMMEDIATE")

    def _insert(self, rows: Rows, seq: int) -> None:
        for name, batch in rows.items():
            if batch:
                if self._digests is not None:
                    self._digests[name].add(batch)
                self._out.executemany(self._inserts[name], batch)
        self._out.execute(
            "INSERT INTO checkpoints (consumer, seq) VALUES (?, ?) "
            "ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
            (AUDIT_CONSUMER, seq),
        )

    def write(self, rows: Rows, seq: int) -> None:
        """One batch of seq-table rows, through ``seq``, in a transaction of its own."""
        self._insert(rows, seq)
        self._out.execute("COMMIT")
        self._out.execute("BEGIN IMMEDIATE")

    def finish(self, rows: Rows, states: list[tuple[Any, ...]], seq: int) -> dict[str, str]:
        """The last rows and the current states; the tables' digests (empty without)."""
        states.sort()  # client_state's key order, for its digest
        self._insert({**rows, client_state.name: states}, seq)
        for ddl in self._indexes:
            self._out.execute(ddl)
        self._out.execute("COMMIT")
        self._out.execute("PRAGMA synchronous=FULL")
        self._out.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.close()
        if self._digests is None:
            return {}
        return {t.name: self._digests[t.name].hexdigest() for t in PROJECTED}

    def close(self, wait: bool = True) -> None:
        """Release the database (``wait`` is for the same call on ``WriterProcess``)."""
        self._out.close()
        self._raw.close()
        self._projection.close()


def _writer_main(path: str, digest: bool, channel: Connection) -> None:
    writer: ReplayWriter | None = None
    try:
        writer = ReplayWriter(Path(path), digest)
        while True:
            # Our own parent over a private pipe: plain tuples of str, int, float and None.
            kind, rows, states, seq = marshal.loads(channel.recv_bytes())  # noqa: S302  # nosec B302
            if kind == "rows":
                writer.write(rows, seq)
                continue
            digests = writer.finish(rows, states, seq)
            writer = None
            channel.send(("ok", digests))
            return
    except Exception as exc:
        channel.send(("error", f"{type(exc).__name__}: {exc}"))
        if writer is not None:
            writer.close()
    finally:
        channel.close()


class WriterProcess:
    """A ``ReplayWriter`` in a second process: the same calls, sent through a pipe."""

    def __init__(self, path: Path, digest: bool) -> None:
        # forkserver: the child is not a fork of this process and its open connections.
        context = multiprocessing.get_context("forkserver")
        self._channel, child = context.Pipe()
        self._process = context.Process(
            target=_writer_main, args=(str(path), digest, child), name="replay-writer", daemon=True
        )
        self._process.start()
        child.close()

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            # marshal, not pickle: the rows are plain tuples and it packs them ~2.5x faster.
            self._channel.send_bytes(marshal.dumps(message))
        except OSError:
            self._fail()  # the writer stopped; it said why before it went

    def _fail(self) -> None:
        reason = "it exited"
        try:
            if self._channel.poll(5):
                _, reason = self._channel.recv()
        except (OSError, EOFError):
            pass
        self.close(wait=False)
        raise RuntimeError(f"the replay's writer failed: {reason}")

    def write(self, rows: Rows, seq: int) -> None:
        self._send(("rows", dict(rows), None, seq))

    def finish(self, rows: Rows, states: list[tuple[Any, ...]], seq: int) -> dict[str, str]:
        self._send(("finish", dict(rows), states, seq))
        try:
            status, result = self._channel.recv()
        except (OSError, EOFError):
            status, result = "error", "it exited"
        self.close()
        if status != "ok":
            raise RuntimeError(f"the replay's writer failed: {result}")
        digests: dict[str, str] = result
        return digests

    def close(self, wait: bool = True) -> None:
        """Wait for the writer to exit (or stop it at once: the replay failed)."""
        self._process.join(timeout=30 if wait else 0)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._channel.close()

"""The dead-letter record: every message a bus consumer gave up on, with the reason.

The broker's dead-letter queue keeps the message itself; this table keeps
why, when and after how many attempts, so operators can read it without
draining a queue, and so each dead letter is alerted once (``record`` says
whether it is new). A message is identified by its queue and the SHA-256 of its body.

With the embedded default the table has a SQLite file of its own
(``dead_letters.sqlite3``); when ``VP_DATABASE_URL`` names PostgreSQL it is
``dead_letters`` in that database (migration 0003), shared by every coordinator
and the projections process, so a message dead-lettered on two of them is still
alerted once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    select,
    update,
)

from eventlog.database import insert_ignoring_conflicts, open_control_engine, open_local_engine
from eventlog.schema import ensure_schema

MAX_BODY_BYTES = 64 * 1024
_REASON_CHARS = 1000

metadata = MetaData()
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("queue", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("times", Integer, nullable=False, server_default="1"),
    PrimaryKeyConstraint("queue", "digest"),
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    queue: str
    digest: str
    reason: str
    attempts: int
    body: bytes
    first_at: float
    times: int


class DeadLetterBook:
    """The record at ``where``: an SQLite file's path, or a PostgreSQL URL (the control
    database, migrated to 0003 or later). Safe to share between threads and processes."""

    def __init__(self, where: Path | str) -> None:
        if isinstance(where, Path):
            where.parent.mkdir(parents=True, exist_ok=True)
            self._engine = open_local_engine(where, synchronous="NORMAL")
            metadata.create_all(self._engine)
        else:
            self._engine = open_control_engine(where, Path("unused"))
            ensure_schema(self._engine)
        self._insert = insert_ignoring_conflicts(self._engine, dead_letters).returning(
            dead_letters.c.times
        )

    def close(self) -> None:
        self._engine.dispose()

    def record(self, queue: str, body: bytes, reason: str, attempts: int) -> tuple[str, bool]:
        """Record one dead letter; return (digest, True if this message is new here)."""
        digest = hashlib.sha256(body).hexdigest()
        now = time.time()
        reason = reason[:_REASON_CHARS]
        with self._engine.begin() as conn:
            # One statement decides "new" atomically, whichever process records it first.
            inserted = conn.execute(
                self._insert,
                {
                    "queue": queue,
                    "digest": digest,
                    "reason": reason,
                    "attempts": attempts,
                    "body": body[:MAX_BODY_BYTES],
                    "first_at": now,
                    "last_at": now,
                    "times": 1,
                },
            )
            if inserted.first() is not None:
                return digest, True
            conn.execute(
                update(dead_letters)
                .where(dead_letters.c.queue == queue, dead_letters.c.digest == digest)
                .values(times=dead_letters.c.times + 1, last_at=now, reason=reason)
            )
            return digest, False

    def all(self, queue: str | None = None) -> list[DeadLetter]:
        c = dead_letters.c
        stmt = select(c.queue, c.digest, c.reason, c.attempts, c.body, c.first_at, c.times)
        if queue is not None:
            stmt = stmt.where(c.queue == queue)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt.order_by(c.first_at)).all()
        return [DeadLetter(r[0], r[1], r[2], int(r[3]), bytes(r[4]), r[5], int(r[6])) for r in rows]

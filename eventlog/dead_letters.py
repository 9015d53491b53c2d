"""The dead-letter record: every message a bus consumer gave up on, with the reason.

The broker's dead-letter queue keeps the message itself; this SQLite file keeps
why, when and after how many attempts, so operators can read it without
draining a queue, and so each dead letter is alerted once (``record`` says
whether it is new). A message is identified by its queue and the SHA-256 of its body.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    queue TEXT NOT NULL, digest TEXT NOT NULL, reason TEXT NOT NULL,
    attempts INTEGER NOT NULL, body BLOB NOT NULL, first_at REAL NOT NULL,
    last_at REAL NOT NULL, times INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (queue, digest));
"""
MAX_BODY_BYTES = 64 * 1024


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
    """SQLite file (WAL mode); safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def record(self, queue: str, body: bytes, reason: str, attempts: int) -> tuple[str, bool]:
        """Record one dead letter; return (digest, True if this message is new here)."""
        digest = hashlib.sha256(body).hexdigest()
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO dead_letters (queue, digest, reason, attempts, body,"
                " first_at, last_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (queue, digest, reason[:1000], attempts, body[:MAX_BODY_BYTES], now, now),
            )
            if cur.rowcount == 1:
                return digest, True
            self._db.execute(
                "UPDATE dead_letters SET times = times + 1, last_at = ?, reason = ?"
                " WHERE queue = ? AND digest = ?",
                (now, reason[:1000], queue, digest),
            )
            return digest, False

    def all(self, queue: str | None = None) -> list[DeadLetter]:
        sql = "SELECT queue, digest, reason, attempts, body, first_at, times FROM dead_letters"
        args: tuple[str, ...] = ()
        if queue is not None:
            sql, args = sql + " WHERE queue = ?", (queue,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY first_at", args).fetchall()
        return [DeadLetter(r[0], r[1], r[2], int(r[3]), bytes(r[4]), r[5], int(r[6])) for r in rows]

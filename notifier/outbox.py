"""The notifier's database: checkpoint, client contacts, and the mail outbox / sent-log.

``apply`` is a checkpointed projection (see ``eventlog.consumer``): in ONE
transaction it records contacts from ``client.created``, inserts one outbox
row per (event, recipient) for the notified event types — the primary key
makes a second insert of the same pair a no-op — and moves the checkpoint.
Delivery marks a row sent (the sent-log) after the SMTP server accepted it;
failed attempts are counted and the next attempt time backs off exponentially.
A row that can never be sent (or failed too often) is quarantined: ``dead_at``
and ``dead_reason`` are set, delivery skips it, and ``retry_dead`` puts it back.
Operations alerts are rows too (event type ``operations.alert``, keyed so each
alert is queued once), sent by the same delivery loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from eventlog.consumer import CheckpointGap
from eventlog.events import ClientCreated
from eventlog.records import StoredEvent
from notifier.messages import NOTIFIED_TYPES, OPERATIONS_ALERT, OPERATIONS_NAME, OPERATIONS_TYPES

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
    client_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    event_id TEXT NOT NULL, recipient TEXT NOT NULL, seq INTEGER NOT NULL,
    event_type TEXT NOT NULL, client_id TEXT NOT NULL, client_name TEXT NOT NULL,
    data TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT, sent_at REAL,
    PRIMARY KEY (event_id, recipient));
CREATE INDEX IF NOT EXISTS ix_outbox_pending ON outbox (sent_at, next_attempt);
"""
# Added after the first release: existing databases get them on open.
QUARANTINE_COLUMNS = (("dead_at", "REAL"), ("dead_reason", "TEXT"))


@dataclass(frozen=True, slots=True)
class PendingMail:
    event_id: str
    recipient: str
    event_type: str
    client_id: str
    client_name: str
    data: dict[str, object]
    attempts: int

    @property
    def is_alert(self) -> bool:
        return self.event_type == OPERATIONS_ALERT


@dataclass(frozen=True, slots=True)
class DeadMail:
    """A quarantined email and why."""

    event_id: str
    recipient: str
    event_type: str
    client_id: str
    attempts: int
    reason: str
    dead_at: float


class NotifierOutbox:
    """SQLite file (WAL mode); every method is one short transaction."""

    name = "notifier"

    def __init__(self, path: Path, ops_email: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        for column, kind in QUARANTINE_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
        self._lock = threading.Lock()
        self.ops_email = ops_email

    def close(self) -> None:
        self._db.close()

    def checkpoint(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM checkpoints WHERE consumer = ?", (self.name,)
            ).fetchone()
        return int(row[0]) if row else 0

    def apply(self, events: Sequence[StoredEvent]) -> int:
        """Contacts, outbox rows and the checkpoint, in one transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT seq FROM checkpoints WHERE consumer = ?", (self.name,)
                ).fetchone()
                cp = int(row[0]) if row else 0
                fresh = [e for e in events if e.seq > cp]
                if fresh and fresh[0].seq != cp + 1:
                    raise CheckpointGap(cp, fresh[0].seq)
                for e in fresh:
                    self._apply_one(e)
                    cp = e.seq
                db.execute(
                    "INSERT INTO checkpoints (consumer, seq) VALUES (?, ?) "
                    "ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
                    (self.name, cp),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return cp

    def _apply_one(self, e: StoredEvent) -> None:
        db = self._db
        if e.type == ClientCreated.event_type and e.client_id:
            db.execute(
                "INSERT OR REPLACE INTO contacts VALUES (?, ?, ?)",
                (e.client_id, str(e.data.get("name", "")), str(e.data.get("email", ""))),
            )
            return
        if e.type in OPERATIONS_TYPES:
            self._to_operations(e)
            return
        if e.type not in NOTIFIED_TYPES or not e.client_id:
            return
        contact = db.execute(
            "SELECT name, email FROM contacts WHERE client_id = ?", (e.client_id,)
        ).fetchone()
        name, email = (contact[0], contact[1]) if contact else (e.client_id, "")
        dead_at, reason = None, None
        try:
            event = e.to_event().model_dump(mode="json", exclude={"client_id"})
        except Exception as exc:  # never becomes an email; must not hold up the ones after it
            event, dead_at = dict(e.data), time.time()
            reason = f"permanent failure: the event cannot be read: {exc}"[:500]
            body = (
                f"The {e.type} event {e.event_id} (seq {e.seq}, client {e.client_id}) cannot "
                f"be read, so its emails were quarantined.\nReason: {reason}\n\nAfter a "
                "fix, run: vectorpanda notifier retry-dead"
            )
            self._insert_alert(
                f"dead-event:{e.event_id}", "VectorPanda: an email was quarantined", body
            )
        data = orjson.dumps(event).decode()
        for recipient in dict.fromkeys(r for r in (email, self.ops_email) if r):
            db.execute(
                "INSERT OR IGNORE INTO outbox (event_id, recipient, seq, event_type, client_id,"
                " client_name, data, dead_at, dead_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.event_id, recipient, e.seq, e.type, e.client_id, name, data, dead_at, reason),
            )

    def _to_operations(self, e: StoredEvent) -> None:
        if not self.ops_email:
            return
        data = orjson.dumps(e.to_event().model_dump(mode="json")).decode()
        self._db.execute(
            "INSERT OR IGNORE INTO outbox (event_id, recipient, seq, event_type, client_id,"
            " client_name, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (e.event_id, self.ops_email, e.seq, e.type, "", OPERATIONS_NAME, data),
        )

    def due(self, now: float, limit: int = 50) -> list[PendingMail]:
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, recipient, event_type, client_id, client_name, data, attempts"
                " FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt <= ?"
                " ORDER BY seq LIMIT ?",
                (now, limit),
            ).fetchall()
        return [
            PendingMail(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5]), int(r[6])) for r in rows
        ]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def mark_sent(self, mail: PendingMail, now: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1"
                " WHERE event_id = ? AND recipient = ?",
                (now, mail.event_id, mail.recipient),
            )

    def mark_failed(self, mail: PendingMail, retry_at: float, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
                " WHERE event_id = ? AND recipient = ?",
                (retry_at, error[:500], mail.event_id, mail.recipient),
            )

    def sent_count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
            return int(row.fetchone()[0])

    def quarantine(self, mail: PendingMail, now: float, reason: str) -> None:
        """Stop trying ``mail``: it can never be sent, or failed too often."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, dead_at = ?, dead_reason = ?"
                " WHERE event_id = ? AND recipient = ?",
                (now, reason[:500], mail.event_id, mail.recipient),
            )

    def dead(self) -> list[DeadMail]:
        """Every quarantined email, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, recipient, event_type, client_id, attempts, dead_reason, dead_at"
                " FROM outbox WHERE dead_at IS NOT NULL AND sent_at IS NULL ORDER BY dead_at"
            ).fetchall()
        return [DeadMail(r[0], r[1], r[2], r[3], int(r[4]), str(r[5]), float(r[6])) for r in rows]

    def retry_dead(self) -> int:
        """Put every quarantined email back in line (after a fix); return how many."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE outbox SET dead_at = NULL, dead_reason = NULL, attempts = 0,"
                " next_attempt = 0 WHERE dead_at IS NOT NULL AND sent_at IS NULL"
            )
            return cur.rowcount

    def queue_alert(self, key: str, subject: str, text: str) -> bool:
        """Queue one email to the operators; False if the alert ``key`` was queued before."""
        with self._lock:
            return self._insert_alert(key, subject, text)

    def _insert_alert(self, key: str, subject: str, text: str) -> bool:
        data = orjson.dumps({"subject": subject, "text": text}).decode()
        cur = self._db.execute(
            "INSERT OR IGNORE INTO outbox (event_id, recipient, seq, event_type, client_id,"
            " client_name, data) VALUES (?, ?, 0, ?, '', 'operations', ?)",
            (f"alert:{key}"[:200], self.ops_email, OPERATIONS_ALERT, data),
        )
        return cur.rowcount == 1


def queue_operations_alert(path: Path, ops_email: str, key: str, subject: str, text: str) -> bool:
    """From any process on this data directory: queue an operations email, once per key."""
    outbox = NotifierOutbox(path, ops_email)
    try:
        return outbox.queue_alert(key, subject, text)
    finally:
        outbox.close()

"""The notifier's database: checkpoint, client contacts, and the mail outbox / sent-log.

``apply`` is a checkpointed projection (see ``eventlog.consumer``): in ONE
transaction it records contacts from ``client.created``, inserts one outbox
row per (event, recipient) for the notified event types — the primary key
makes a second insert of the same pair a no-op — and moves the checkpoint.
Delivery claims the rows it is about to send (their next attempt moves a lease
ahead, so another notifier sharing the database skips them; one that dies
mid-send leaves them due again when the lease runs out), then marks each sent
(the sent-log) after the SMTP server accepted it; failed attempts are counted
and the next attempt time backs off exponentially.
A row that can never be sent (or failed too often) is quarantined: ``dead_at``
and ``dead_reason`` are set, delivery skips it, and ``retry_dead`` puts it back.
Operations alerts are rows too (event type ``operations.alert``, keyed so each
alert is queued once), sent by the same delivery loop.

Where: the SQLite file ``notifier.sqlite3`` (tables ``checkpoints``,
``contacts``, ``outbox``) by default, or the PostgreSQL control database when
``VP_DATABASE_URL`` names one (``consumer_checkpoints``, ``notifier_contacts``,
``notifier_outbox``, made by the migrations), shared by every coordinator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    and_,
    func,
    select,
    update,
)

from eventlog.consumer import CheckpointGap
from eventlog.database import (
    consumer_transaction,
    insert_ignoring_conflicts,
    is_postgres,
    open_control_engine,
    read_transaction,
    row_transaction,
    upsert,
)
from eventlog.events import ClientCreated
from eventlog.records import StoredEvent
from eventlog.sqlite import open_engine
from notifier.messages import NOTIFIED_TYPES, OPERATIONS_ALERT, OPERATIONS_NAME, OPERATIONS_TYPES

# The embedded file's schema, as every release made it (kept: the default is unchanged).
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
# How long a claimed email is left to its sender before another notifier may take it.
CLAIM_LEASE_S = 120.0


@dataclass(frozen=True)
class OutboxTables:
    checkpoints: Table
    contacts: Table
    outbox: Table


def outbox_tables(checkpoints: str, contacts: str, outbox: str) -> OutboxTables:
    meta = MetaData()
    return OutboxTables(
        Table(
            checkpoints,
            meta,
            Column("consumer", Text, primary_key=True),
            Column("seq", BigInteger, nullable=False),
        ),
        Table(
            contacts,
            meta,
            Column("client_id", Text, primary_key=True),
            Column("name", Text, nullable=False),
            Column("email", Text, nullable=False),
        ),
        Table(
            outbox,
            meta,
            Column("event_id", Text, nullable=False),
            Column("recipient", Text, nullable=False),
            Column("seq", BigInteger, nullable=False),
            Column("event_type", Text, nullable=False),
            Column("client_id", Text, nullable=False),
            Column("client_name", Text, nullable=False),
            Column("data", Text, nullable=False),
            Column("attempts", Integer, nullable=False, server_default="0"),
            Column("next_attempt", Float, nullable=False, server_default="0"),
            Column("last_error", Text),
            Column("sent_at", Float),
            Column("dead_at", Float),
            Column("dead_reason", Text),
            PrimaryKeyConstraint("event_id", "recipient"),
        ),
    )


FILE_TABLES = outbox_tables("checkpoints", "contacts", "outbox")
SHARED_TABLES = outbox_tables("consumer_checkpoints", "notifier_contacts", "notifier_outbox")
Where = Path | str | Engine


def open_outbox_engine(where: Where) -> tuple[Engine, OutboxTables]:
    """The SQLite file at a Path, or the control database a URL (or engine) names."""
    if isinstance(where, Path):
        engine = open_engine(where)
        raw = engine.raw_connection()
        try:
            raw.executescript(SCHEMA)
            have = {row[1] for row in raw.execute("PRAGMA table_info(outbox)")}
            for column, kind in QUARANTINE_COLUMNS:
                if column not in have:
                    raw.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
        finally:
            raw.close()
        return engine, FILE_TABLES
    engine = open_control_engine(where, Path("unused")) if isinstance(where, str) else where
    if not is_postgres(engine):
        raise ValueError("the shared notifier tables live in a PostgreSQL control database")
    from eventlog.schema import ensure_schema

    ensure_schema(engine)
    return engine, SHARED_TABLES


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
    """Every method is one short transaction (SQLite file or the shared PostgreSQL)."""

    name = "notifier"

    def __init__(self, where: Where, ops_email: str) -> None:
        self._engine, self._t = open_outbox_engine(where)
        self._owns_engine = not isinstance(where, Engine)
        self._lock = threading.Lock()
        self.ops_email = ops_email

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def checkpoint(self) -> int:
        with read_transaction(self._engine) as conn:
            return self._checkpoint(conn)

    def _checkpoint(self, conn: Any) -> int:
        cp = self._t.checkpoints
        row = conn.execute(select(cp.c.seq).where(cp.c.consumer == self.name)).first()
        return int(row[0]) if row else 0

    def apply(self, events: Sequence[StoredEvent]) -> int:
        """Contacts, outbox rows and the checkpoint, in one transaction."""
        with self._lock, consumer_transaction(self._engine, self.name) as conn:
            cp = self._checkpoint(conn)
            fresh = [e for e in events if e.seq > cp]
            if fresh and fresh[0].seq != cp + 1:
                raise CheckpointGap(cp, fresh[0].seq)
            for e in fresh:
                self._apply_one(conn, e)
                cp = e.seq
            conn.execute(
                upsert(conn, self._t.checkpoints, ["consumer"], {"consumer": self.name, "seq": cp})
            )
            return cp

    def _apply_one(self, conn: Any, e: StoredEvent) -> None:
        contacts = self._t.contacts
        if e.type == ClientCreated.event_type and e.client_id:
            row = {
                "client_id": e.client_id,
                "name": str(e.data.get("name", "")),
                "email": str(e.data.get("email", "")),
            }
            conn.execute(upsert(conn, contacts, ["client_id"], row))
            return
        if e.type in OPERATIONS_TYPES:
            self._to_operations(conn, e)
            return
        if e.type not in NOTIFIED_TYPES or not e.client_id:
            return
        contact = conn.execute(
            select(contacts.c.name, contacts.c.email).where(contacts.c.client_id == e.client_id)
        ).first()
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
                conn, f"dead-event:{e.event_id}", "VectorPanda: an email was quarantined", body
            )
        data = orjson.dumps(event).decode()
        rows = [
            {
                "event_id": e.event_id,
                "recipient": recipient,
                "seq": e.seq,
                "event_type": e.type,
                "client_id": e.client_id,
                "client_name": name,
                "data": data,
                "dead_at": dead_at,
                "dead_reason": reason,
            }
            for recipient in dict.fromkeys(r for r in (email, self.ops_email) if r)
        ]
        if rows:
            conn.execute(insert_ignoring_conflicts(conn, self._t.outbox), rows)

    def _to_operations(self, conn: Any, e: StoredEvent) -> None:
        if not self.ops_email:
            return
        data = orjson.dumps(e.to_event().model_dump(mode="json")).decode()
        row = {
            "event_id": e.event_id,
            "recipient": self.ops_email,
            "seq": e.seq,
            "event_type": e.type,
            "client_id": "",
            "client_name": OPERATIONS_NAME,
            "data": data,
        }
        conn.execute(insert_ignoring_conflicts(conn, self._t.outbox).values(**row))

    def _pending(self) -> Any:
        o = self._t.outbox
        return and_(o.c.sent_at.is_(None), o.c.dead_at.is_(None))

    def _mails(self, rows: Any) -> list[PendingMail]:
        return [
            PendingMail(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5]), int(r[6])) for r in rows
        ]

    def _due_query(self, now: float, limit: int) -> Any:
        o = self._t.outbox
        return (
            select(
                o.c.event_id,
                o.c.recipient,
                o.c.event_type,
                o.c.client_id,
                o.c.client_name,
                o.c.data,
                o.c.attempts,
            )
            .where(self._pending(), o.c.next_attempt <= now)
            .order_by(o.c.seq)
            .limit(limit)
        )

    def due(self, now: float, limit: int = 50) -> list[PendingMail]:
        """What is due at ``now`` (a read: nothing is claimed)."""
        with read_transaction(self._engine) as conn:
            return self._mails(conn.execute(self._due_query(now, limit)).all())

    def claim(
        self, now: float, limit: int = 50, lease_s: float = CLAIM_LEASE_S
    ) -> list[PendingMail]:
        """The emails due at ``now``, each moved ``lease_s`` ahead so no other notifier
        takes it meanwhile (rows another notifier is claiming are skipped, not waited on)."""
        o = self._t.outbox
        query = self._due_query(now, limit)
        if is_postgres(self._engine):
            query = query.with_for_update(skip_locked=True)
        with self._lock, row_transaction(self._engine) as conn:
            mails = self._mails(conn.execute(query).all())
            for mail in mails:
                conn.execute(
                    update(o)
                    .where(o.c.event_id == mail.event_id, o.c.recipient == mail.recipient)
                    .values(next_attempt=now + lease_s)
                )
        return mails

    def release(self, mails: Sequence[PendingMail]) -> None:
        """Hand back claimed emails this notifier will not send after all (it is stopping)."""
        o = self._t.outbox
        with self._lock, row_transaction(self._engine) as conn:
            for mail in mails:
                conn.execute(
                    update(o)
                    .where(
                        o.c.event_id == mail.event_id,
                        o.c.recipient == mail.recipient,
                        o.c.sent_at.is_(None),
                    )
                    .values(next_attempt=0)
                )

    def next_due(self) -> float | None:
        o = self._t.outbox
        with read_transaction(self._engine) as conn:
            found = conn.execute(select(func.min(o.c.next_attempt)).where(self._pending())).scalar()
        return None if found is None else float(found)

    def _update(self, mail: PendingMail, **values: Any) -> int:
        o = self._t.outbox
        with self._lock, row_transaction(self._engine) as conn:
            done = conn.execute(
                update(o)
                .where(o.c.event_id == mail.event_id, o.c.recipient == mail.recipient)
                .values(**values)
            )
        return int(done.rowcount)

    def mark_sent(self, mail: PendingMail, now: float) -> None:
        self._update(mail, sent_at=now, attempts=self._t.outbox.c.attempts + 1)

    def mark_failed(self, mail: PendingMail, retry_at: float, error: str) -> None:
        attempts = self._t.outbox.c.attempts + 1
        self._update(mail, attempts=attempts, next_attempt=retry_at, last_error=error[:500])

    def sent_count(self) -> int:
        o = self._t.outbox
        with read_transaction(self._engine) as conn:
            query = select(func.count()).select_from(o).where(o.c.sent_at.is_not(None))
            return int(conn.execute(query).scalar_one())

    def quarantine(self, mail: PendingMail, now: float, reason: str) -> None:
        """Stop trying ``mail``: it can never be sent, or failed too often."""
        attempts = self._t.outbox.c.attempts + 1
        self._update(mail, attempts=attempts, dead_at=now, dead_reason=reason[:500])

    def dead(self) -> list[DeadMail]:
        """Every quarantined email, oldest first."""
        o = self._t.outbox
        query = (
            select(
                o.c.event_id,
                o.c.recipient,
                o.c.event_type,
                o.c.client_id,
                o.c.attempts,
                o.c.dead_reason,
                o.c.dead_at,
            )
            .where(o.c.dead_at.is_not(None), o.c.sent_at.is_(None))
            .order_by(o.c.dead_at)
        )
        with read_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
        return [DeadMail(r[0], r[1], r[2], r[3], int(r[4]), str(r[5]), float(r[6])) for r in rows]

    def retry_dead(self) -> int:
        """Put every quarantined email back in line (after a fix); return how many."""
        o = self._t.outbox
        with self._lock, row_transaction(self._engine) as conn:
            done = conn.execute(
                update(o)
                .where(o.c.dead_at.is_not(None), o.c.sent_at.is_(None))
                .values(dead_at=None, dead_reason=None, attempts=0, next_attempt=0)
            )
        return int(done.rowcount)

    def queue_alert(self, key: str, subject: str, text: str) -> bool:
        """Queue one email to the operators; False if the alert ``key`` was queued before."""
        with self._lock, row_transaction(self._engine) as conn:
            return self._insert_alert(conn, key, subject, text)

    def _insert_alert(self, conn: Any, key: str, subject: str, text: str) -> bool:
        data = orjson.dumps({"subject": subject, "text": text}).decode()
        row = {
            "event_id": f"alert:{key}"[:200],
            "recipient": self.ops_email,
            "seq": 0,
            "event_type": OPERATIONS_ALERT,
            "client_id": "",
            "client_name": "operations",
            "data": data,
        }
        outbox = self._t.outbox
        stmt = insert_ignoring_conflicts(conn, outbox).values(**row).returning(outbox.c.seq)
        return conn.execute(stmt).first() is not None  # nothing back: queued before


def queue_operations_alert(where: Where, ops_email: str, key: str, subject: str, text: str) -> bool:
    """From any process on this data directory: queue an operations email, once per key."""
    outbox = NotifierOutbox(where, ops_email)
    try:
        return outbox.queue_alert(key, subject, text)
    finally:
        outbox.close()

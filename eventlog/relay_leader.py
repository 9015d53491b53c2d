"""One relay for all coordinators sharing a PostgreSQL control database.

Every coordinator runs an ``OutboxRelay``; on PostgreSQL only the one holding
a session-level advisory lock (``pg_try_advisory_lock``) on a connection of
its own reads the outbox, so each event is published by one coordinator, in
seq order. When that coordinator dies, its connection closes, the server
releases the lock, and the next relay to poll takes over from the outbox
(what the dead one published but had not yet marked goes out again; the
consumers skip it by seq). On SQLite, one coordinator per file, it always leads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy import Connection, Engine

from eventlog.database import is_postgres
from eventlog.records import EventStore, StoredEvent

# "VPRELAY1" in ASCII: distinct from the write lock.
RELAY_LOCK_KEY = 0x565052454C415931
log = logging.getLogger("vectorpanda.relay")


class AdvisoryLeadership:
    """Whether this process holds the session advisory lock ``key`` (kept across calls).

    The one relay that publishes, the one scheduler that runs the jobs: whoever holds
    the lock leads; when its process dies the server releases the lock with its
    connection and the next process to ask takes over.
    """

    def __init__(self, engine: Engine, key: int = 0, role: str = "leader") -> None:
        self._engine = engine
        self._key = key
        self._role = role
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def held(self) -> bool:
        """Still the leader, or just became it; False while another coordinator leads."""
        if not is_postgres(self._engine):
            return True
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.exec_driver_sql("SELECT 1")  # the lock lives with this session
                    return True
                except Exception:
                    log.warning("%s leadership lost with its database connection", self._role)
                    self._drop()
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                got = conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (self._key,)).scalar()
            except Exception:
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            log.info("this coordinator now leads as the %s", self._role)
            self._conn = conn
            return True

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()  # never back to the pool still holding the lock
            finally:
                self._conn = None

    def release(self) -> None:
        """Give up leadership (shutdown): another coordinator takes over at its next poll."""
        with self._lock:
            self._drop()


class RelayLeadership(AdvisoryLeadership):
    """Whether this process is the one relay that publishes."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, RELAY_LOCK_KEY, "outbox relay")


class LeaderOutbox:
    """The outbox as the relay sees it: empty unless this coordinator leads."""

    def __init__(self, store: EventStore, leadership: RelayLeadership) -> None:
        self._store = store
        self.leadership = leadership

    def pending_outbox(self, limit: int = 100) -> list[StoredEvent]:
        return self._store.pending_outbox(limit) if self.leadership.held() else []

    def mark_published(self, seqs: Sequence[int]) -> None:
        self._store.mark_published(seqs)

"""Which coordinator process leads: placement and the singleton duties.

With several coordinator processes on one machine (VP_COORDINATOR_PROCESSES) every
one serves the whole HTTP API, but one alone decides placement (ASSIGN, RELEASE,
moves, rebalancing, fencing) and runs the duties that must run once: the outbox
relay, the in-process projector, the scheduler and the notifier, pause reconciliation,
storage and encryption duties.

The leader is whoever holds a lock: ``flock`` on ``<data>/coordinator-leader.lock``
with the SQLite control database, a session advisory lock (``pg_try_advisory_lock``
on a connection of its own, like the relay's) with PostgreSQL. The kernel or the
server releases it when the holder dies, however it dies; every other process polls
and the first to take it leads from then on. The leader writes the address of its
internal placement API to ``<data>/coordinator-leader.json`` for followers (on
PostgreSQL into its row of the membership table instead, coordinator/membership.py,
since the followers may run on other hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import Connection, Engine

from eventlog.database import is_postgres

log = logging.getLogger("vectorpanda.leader")

# "VPLEADR1" in ASCII: distinct from the relay's and the write lock's keys.
LEADER_LOCK_KEY = 0x56504C4541445231
POLL_S = 0.25
LOCK_FILE = "coordinator-leader.lock"
ADDRESS_FILE = "coordinator-leader.json"


class Leadership:
    """Held by one coordinator process at a time; taken over when its holder dies."""

    def __init__(self, data_dir: Path, engine: Engine | None = None) -> None:
        self._data_dir = data_dir
        self._engine = engine if engine is not None and is_postgres(engine) else None
        self._fd: int | None = None
        self._conn: Connection | None = None
        self.is_leader = False
        self.gained = asyncio.Event()
        self.lost = asyncio.Event()

    @property
    def address_file(self) -> Path:
        return self._data_dir / ADDRESS_FILE

    def try_acquire(self) -> bool:
        """Take the lock if it is free (never blocks); True if this process now leads."""
        if self.is_leader:
            return True
        got = self._try_advisory() if self._engine is not None else self._try_flock()
        if got:
            self.is_leader = True
            self.gained.set()
            log.info("this coordinator process (pid %d) now leads placement", os.getpid())
        return got

    def _try_flock(self) -> bool:
        if self._fd is None:
            self._fd = os.open(self._data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _try_advisory(self) -> bool:
        assert self._engine is not None
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.exec_driver_sql(
                "SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)
            ).scalar()
        except Exception:
            # It may hold the lock without knowing it: never back into the pool, which
            # the membership heartbeat shares (vectorpanda/server/group.py).
            with contextlib.suppress(Exception):
                conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        """False once the PostgreSQL session that holds the lock is gone (flock: always)."""
        if not self.is_leader or self._conn is None:
            return self.is_leader
        try:
            self._conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            log.error("placement leadership lost with its database connection")
            return False

    def publish(self, url: str) -> None:
        """Tell followers where the leader's internal API listens (atomic replace)."""
        temp = self.address_file.with_name(f".{ADDRESS_FILE}.{os.getpid()}")
        temp.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
        os.chmod(temp, 0o600)
        os.replace(temp, self.address_file)

    async def run(self, stop: asyncio.Event, on_gain: Callable[[], Awaitable[None]]) -> None:
        """Poll for the lock until it is ours, call ``on_gain``, then watch that it stays ours.

        Leadership that is lost (its database session died) sets ``lost``: the process
        must stop, since it cannot unsend what it placed; the launcher restarts it.
        """
        while not stop.is_set() and not await asyncio.to_thread(self.try_acquire):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
        if stop.is_set():
            return
        await on_gain()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if not stop.is_set() and not await asyncio.to_thread(self.still_held):
                self.lost.set()
                return

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        self.is_leader = False

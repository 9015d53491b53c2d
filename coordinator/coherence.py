"""Key-cache coherence across coordinator processes, without the bus.

A command evicts the key cache of the process that ran it before it returns; other
processes sharing the control database learn of it from the bus (accounts/eviction.py)
when there is one that reaches them. With the in-process bus (``vectorpanda up``
without RabbitMQ), or while RabbitMQ is down, that path reaches nobody else, so every
coordinator process also follows the event log itself: every ``POLL_S`` it reads the
events appended since the last it saw (one indexed range read, usually empty) and
evicts what revocations, pauses, resumes, deletions and tier changes make stale. A
revoked key is thus refused by every process within ``POLL_S`` plus one read, on
SQLite and on PostgreSQL alike, whatever the bus does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from eventlog.store import StoredEvent

log = logging.getLogger("vectorpanda.coherence")

POLL_S = 0.2
BATCH = 500


class EventSource(Protocol):
    def read(self, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]: ...

    def head(self) -> object: ...


class Evicts(Protocol):
    def apply(self, events: Sequence[StoredEvent]) -> None: ...


class LogFollower:
    """Applies every new event of the log to the key cache, from the head at start-up on."""

    def __init__(self, store: EventSource, key_cache: Evicts, poll_s: float = POLL_S) -> None:
        self._store = store
        self._key_cache = key_cache
        self._poll_s = poll_s
        self.last_seq: int | None = None
        self.applied = 0

    def fetch(self) -> list[StoredEvent]:
        """The events appended since the last fetch (a thread may run this)."""
        if self.last_seq is None:
            self.last_seq = int(getattr(self._store.head(), "seq", 0))
            return []
        fetched: list[StoredEvent] = []
        while True:
            events = self._store.read(after_seq=self.last_seq, limit=BATCH)
            fetched.extend(events)
            if events:
                self.last_seq = events[-1].seq
            if len(events) < BATCH:
                return fetched

    def poll_once(self) -> int:
        """Fetch and apply; return how many events were read."""
        events = self.fetch()
        if events:
            self._key_cache.apply(events)
            self.applied += len(events)
        return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                events = await asyncio.to_thread(self.fetch)
                if events:  # the cache is the event loop's: evict there
                    self._key_cache.apply(events)
                    self.applied += len(events)
            except Exception:  # a database hiccup must not end coherence for good
                log.exception("following the event log for key-cache eviction failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)

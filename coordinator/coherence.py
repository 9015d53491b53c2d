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

Read-your-writes across processes: each process posts the last seq it has applied on
a shared board (``CoherenceBoard``, ``<data>/run/coherence``); a command that revokes,
pauses, resumes, deletes or changes a tier returns only once every live process has
applied the log up to it (``wait_applied``, at most ``WAIT_S``). After the admin API
answers a revocation, no coordinator process accepts the key any more.
With the control plane on PostgreSQL the board is the group's membership table instead
(coordinator/membership.py), so members on other hosts count too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from eventlog.store import StoredEvent

log = logging.getLogger("vectorpanda.coherence")

POLL_S = 0.1
BATCH = 500
WAIT_S = 1.0
# A process whose post is older than this is not running (or not yet): nobody waits on it.
STALE_S = 1.0
_POST = struct.Struct("<qd")  # last applied seq, monotonic time of the post


class CoherenceBoard:
    """One slot per coordinator process: the seq it has applied, and when it said so."""

    def __init__(self, path: Path, slots: int, clock: Callable[[], float] = time.monotonic):
        size = slots * _POST.size
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._slots = slots
        self._clock = clock

    def post(self, index: int, seq: int) -> None:
        _POST.pack_into(self._map, index * _POST.size, seq, self._clock())

    def behind(self, index: int, seq: int) -> list[int]:
        """Live processes other than ``index`` that have not applied ``seq`` yet."""
        now = self._clock()
        late = []
        for other in range(self._slots):
            if other == index:
                continue
            applied, at = _POST.unpack_from(self._map, other * _POST.size)
            if now - at <= STALE_S and applied < seq:
                late.append(other)
        return late

    async def wait_applied(self, index: int, seq: int, timeout_s: float = WAIT_S) -> bool:
        """Wait until every live process has applied ``seq``; False if one is still behind."""
        deadline = self._clock() + timeout_s
        while self.behind(index, seq):
            if self._clock() >= deadline:
                log.warning(
                    "coordinator processes %s lag behind seq %d", self.behind(index, seq), seq
                )
                return False
            await asyncio.sleep(0.01)
        return True

    def close(self) -> None:
        self._map.close()


class EventSource(Protocol):
    def read(self, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]: ...

    def head(self) -> object: ...


class Evicts(Protocol):
    def apply(self, events: Sequence[StoredEvent]) -> None: ...


class LogFollower:
    """Applies every new event of the log to the key cache, from the head at start-up on."""

    def __init__(
        self,
        store: EventSource,
        key_cache: Evicts,
        poll_s: float = POLL_S,
        on_applied: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._on_applied = on_applied
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
                if self._on_applied is not None and self.last_seq is not None:
                    self._on_applied(self.last_seq)
            except Exception:  # a database hiccup must not end coherence for good
                log.exception("following the event log for key-cache eviction failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)

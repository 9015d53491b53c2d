"""The in-memory event store: same contract as SQLite, for fast unit tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from eventlog.events import Event
from eventlog.hashchain import GENESIS_HASH, ChainReport, verify_rows
from eventlog.records import ChainHead, StoredEvent, chain_events, check_read_args


class InMemoryEventStore:
    """Events in a list; the outbox is a set of unpublished seqs."""

    def __init__(self) -> None:
        self._events: list[StoredEvent] = []
        self._outbox: set[int] = set()
        self._lock = threading.Lock()

    def append(
        self, events: Sequence[Event], actor: str, occurred_at: str | None = None
    ) -> list[StoredEvent]:
        with self._lock:
            stored = chain_events(self.head(), events, actor, occurred_at)
            self._events.extend(stored)
            self._outbox.update(ev.seq for ev in stored)
            return stored

    def read(
        self,
        after_seq: int = 0,
        limit: int = 100,
        client_id: str | None = None,
        type: str | None = None,
    ) -> list[StoredEvent]:
        check_read_args(after_seq, limit)
        # seq n sits at index n-1, so a page starts without scanning the prefix.
        found: list[StoredEvent] = []
        for ev in self._events[after_seq:]:
            if client_id is not None and ev.client_id != client_id:
                continue
            if type is not None and ev.type != type:
                continue
            found.append(ev)
            if len(found) == limit:
                break
        return found

    def client_events(
        self, client_id: str, until: str, types: Sequence[str] | None = None
    ) -> Iterator[StoredEvent]:
        wanted = None if types is None else frozenset(types)
        for ev in list(self._events):
            if ev.client_id != client_id or ev.occurred_at > until:
                continue
            if wanted is None or ev.type in wanted:
                yield ev

    def head(self) -> ChainHead:
        if not self._events:
            return ChainHead(0, GENESIS_HASH)
        last = self._events[-1]
        return ChainHead(last.seq, last.hash)

    def verify_chain(self) -> ChainReport:
        return verify_rows(ev.chain_row() for ev in list(self._events))

    def pending_outbox(self, limit: int = 100) -> list[StoredEvent]:
        return [self._events[seq - 1] for seq in sorted(self._outbox)[:limit]]

    def mark_published(self, seqs: Sequence[int]) -> None:
        with self._lock:
            self._outbox.difference_update(seqs)

    def snapshot(self) -> tuple[int, frozenset[int]]:
        """Where the log stands, so a failed unit of work can roll back to it."""
        return len(self._events), frozenset(self._outbox)

    def restore(self, mark: tuple[int, frozenset[int]]) -> None:
        """Forget everything appended since ``snapshot``."""
        length, outbox = mark
        del self._events[length:]
        self._outbox = set(outbox)

"""Checkpointed consumers: apply every event exactly once, in seq order.

A ``CheckpointedProjection`` records the last applied seq in the same
transaction as its effect. ``CheckpointedConsumer`` turns bus deliveries into
calls on it:

- a delivery at or below the checkpoint is a duplicate: acknowledged, skipped;
- a delivery is trusted only if it matches the event log (same seq, same
  hash); one that does not, or cannot be parsed, is poison (dead-lettered);
- the events are applied from the log itself, from the checkpoint through the
  delivered seq, so a message lost, reordered or redelivered by the bus can
  never leave a hole: the log, not the bus, is the record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from eventlog.bus import Delivery, PoisonMessage, decode_message
from eventlog.records import MAX_READ_LIMIT, StoredEvent

log = logging.getLogger("vectorpanda.consumer")


class CheckpointGap(Exception):
    """Events handed to a projection do not follow its checkpoint."""

    def __init__(self, checkpoint: int, first: int) -> None:
        super().__init__(f"checkpoint is {checkpoint}, next event offered is {first}")
        self.checkpoint = checkpoint


class CheckpointedProjection(Protocol):
    name: str

    def checkpoint(self) -> int: ...

    def apply(self, events: Sequence[StoredEvent]) -> int:
        """Apply events after the checkpoint in one transaction; return the new checkpoint."""
        ...


class EventReader(Protocol):
    def read(
        self,
        after_seq: int = 0,
        limit: int = 100,
        client_id: str | None = None,
        type: str | None = None,
    ) -> list[StoredEvent]: ...


class CheckpointedConsumer:
    """Feeds one projection from bus deliveries, filling any gap from the log."""

    def __init__(
        self, projection: CheckpointedProjection, events: EventReader, *, batch: int = 500
    ) -> None:
        self.projection = projection
        self._events = events
        self._batch = min(batch, MAX_READ_LIMIT)
        # A lower bound of the stored checkpoint: lets duplicates skip the database.
        self._known = 0
        self._lock = asyncio.Lock()

    @property
    def checkpoint_hint(self) -> int:
        return self._known

    async def handle(self, delivery: Delivery) -> None:
        """Bus handler: raise PoisonMessage for what must be dead-lettered."""
        stored = decode_message(delivery.body)
        if stored.seq <= self._known:
            return
        async with self._lock:
            self._known = await asyncio.to_thread(self._apply_through, stored)

    async def catch_up(self) -> int:
        """Apply everything in the log after the checkpoint (start-up, polling)."""
        async with self._lock:
            self._known = await asyncio.to_thread(self._apply_through, None)
            return self._known

    def _apply_through(self, target: StoredEvent | None) -> int:
        # Once known, the checkpoint is taken from memory instead of a read transaction
        # per delivery: it is a lower bound (another process may have moved it on), and
        # apply() skips what is already applied and answers with the stored checkpoint.
        cp = self._known or self.projection.checkpoint()
        goal = None if target is None else target.seq
        while goal is None or cp < goal:
            page = self._events.read(after_seq=cp, limit=self._batch)
            if target is not None and goal is not None:
                if not page or (page[-1].seq < goal and len(page) < self._batch):
                    raise PoisonMessage(f"seq {goal} is not in the event log")
                match = next((e for e in page if e.seq == goal), None)
                if match is not None and match.hash != target.hash:
                    raise PoisonMessage(f"seq {goal} does not match the event log")
            if not page:
                break
            try:
                cp = self.projection.apply(page)
            except CheckpointGap as gap:
                # Another process moved the checkpoint; continue from where it is.
                cp = gap.checkpoint
        return cp

"""The outbox relay: publishes stored events to the bus in seq order.

An outbox row is deleted only after the bus confirmed its message, so a crash
between confirm and delete publishes the event again after restart; the
consumers skip the duplicate by its seq. A refused publish (unroutable,
nacked, broker down) leaves the row pending, is logged loudly and retried
with backoff: the event store is the record, the bus only carries copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from eventlog.bus import PublishRefused
from eventlog.records import StoredEvent

log = logging.getLogger("vectorpanda.relay")


class Outbox(Protocol):
    def pending_outbox(self, limit: int = 100) -> list[StoredEvent]: ...

    def mark_published(self, seqs: Sequence[int]) -> None: ...


class Publisher(Protocol):
    async def publish(self, stored: StoredEvent) -> None: ...


class OutboxRelay:
    """Moves outbox rows to the bus; ``wake()`` after a commit for low latency."""

    def __init__(
        self,
        outbox: Outbox,
        bus: Publisher,
        *,
        batch: int = 500,
        window: int = 100,
        poll_s: float = 0.5,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._outbox = outbox
        self._bus = bus
        self._batch = batch
        self._window = window
        self._poll_s = poll_s
        self._max_backoff_s = max_backoff_s
        self._wakeup = asyncio.Event()
        self.published = 0

    def wake(self, _events: object = None) -> None:
        """Publish soon (usable as a commit listener of the unit of work)."""
        self._wakeup.set()

    async def publish_pending(self) -> tuple[int, bool]:
        """One pass: (events published, whether more may be pending).

        Raises ``PublishRefused`` after marking whatever was confirmed, when
        some event of the pass was not taken by the bus.
        """
        rows = await asyncio.to_thread(self._outbox.pending_outbox, self._batch)
        done = 0
        for start in range(0, len(rows), self._window):
            chunk = rows[start : start + self._window]
            # Sent in seq order on one channel; the confirms are awaited together.
            results = await asyncio.gather(
                *(self._bus.publish(row) for row in chunk), return_exceptions=True
            )
            confirmed = [row.seq for row, res in zip(chunk, results, strict=True) if res is None]
            if confirmed:
                await asyncio.to_thread(self._outbox.mark_published, confirmed)
                done += len(confirmed)
                self.published += len(confirmed)
            failures = [(r, e) for r, e in zip(chunk, results, strict=True) if e is not None]
            if failures:
                row, exc = failures[0]
                if not isinstance(exc, Exception):
                    raise exc  # cancellation
                raise PublishRefused(
                    f"{len(failures)} event(s) not published, first seq={row.seq} "
                    f"type={row.type}: {exc}"
                ) from exc
        return done, len(rows) == self._batch

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set, waking on commits and polling as a fallback."""
        backoff = 0.0
        while not stop.is_set():
            self._wakeup.clear()
            try:
                _, more = await self.publish_pending()
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.2), self._max_backoff_s)
                log.error(
                    "OUTBOX NOT DRAINING: %s; the events stay in the outbox, retry in %.1fs",
                    exc,
                    backoff,
                )
                await _wait_either(stop, None, backoff)
                continue
            backoff = 0.0
            if not more:
                await _wait_either(stop, self._wakeup, self._poll_s)


async def _wait_either(stop: asyncio.Event, other: asyncio.Event | None, seconds: float) -> None:
    waiters = [asyncio.create_task(stop.wait())]
    if other is not None:
        waiters.append(asyncio.create_task(other.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""Group commit: writes that arrive together share one transaction and one fsync.

A dedicated writer thread commits batches back to back: while one batch commits,
new writes queue; the moment its COMMIT returns the writer takes them all (up to
``MAX_GROUP_COMMIT``) and starts the next transaction, without waiting for the event
loop to answer the batch just committed (the loop does that meanwhile). Each body
runs in its own savepoint, so one that raises rolls back alone, and each caller is
answered only after the commit that holds its own changes, listeners first.

Answers go back to each caller's event loop in commit order (one
``call_soon_threadsafe`` per batch, FIFO on a loop), so no write is ever acknowledged
before an earlier batch's outcome is delivered; a batch whose transaction fails
(the COMMIT's fsync included) is answered with the failure, none of it acknowledged.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

from eventlog.records import StoredEvent

WriteBody = Callable[[Any], Any]
# (committed, result or exception, events appended) for each body of a batch.
Outcome = tuple[bool, Any, list[StoredEvent]]
RunBatch = Callable[[Sequence[WriteBody]], list[Outcome]]
# Bounds one transaction's length (and so the wait of the first writer in it).
MAX_GROUP_COMMIT = 256
# An idle writer thread ends after this long; the next write starts another.
_IDLE_EXIT_S = 5.0

_Queued = tuple[WriteBody, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class GroupCommitter:
    """Queues write bodies and commits them in batches on a writer thread of its own."""

    def __init__(
        self,
        run_batch: RunBatch,
        notify: Callable[[Sequence[StoredEvent]], None],
        failure: Callable[[BaseException], BaseException],
    ) -> None:
        self._run_batch = run_batch  # blocking: runs on the writer thread
        self._notify = notify  # on the caller's event loop, before the caller is answered
        self._failure = failure  # the error a caller sees for a store failure
        self._queued: deque[_Queued] = deque()
        self._wake = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False

    async def write(self, body: WriteBody) -> Any:
        """``body``'s result once the transaction holding it has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._wake:
            self._queued.append((body, future, loop))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_queued, name="vp-group-commit", daemon=True
                )
                self._writer.start()
            else:
                self._wake.notify()
        return await future

    def close(self, timeout: float = 30.0) -> None:
        """Let the writer finish what is queued, then stop it (a later write starts another)."""
        with self._wake:
            self._closed = True
            writer = self._writer
            self._wake.notify()
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout)
        with self._wake:
            self._closed = False

    def _next_batch(self) -> list[_Queued] | None:
        """The queued writes (at most MAX_GROUP_COMMIT), waiting for some; None: stop."""
        with self._wake:
            while not self._queued:
                if self._closed or (not self._wake.wait(_IDLE_EXIT_S) and not self._queued):
                    self._writer = None  # under the lock: a later write starts a new one
                    return None
            count = min(len(self._queued), MAX_GROUP_COMMIT)
            return [self._queued.popleft() for _ in range(count)]

    def _write_queued(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                outcomes: list[Outcome] | BaseException = self._run_batch([b for b, _, _ in batch])
            except BaseException as exc:  # every caller must be answered
                # The transaction itself failed (no commit): the whole batch left no trace.
                outcomes = exc
            self._deliver(batch, outcomes)

    def _deliver(self, batch: list[_Queued], outcomes: list[Outcome] | BaseException) -> None:
        """Hand a batch's outcomes to its callers' loops, one callback per loop, in order."""
        loops: dict[asyncio.AbstractEventLoop, list[int]] = {}
        for i, (_, _, loop) in enumerate(batch):
            loops.setdefault(loop, []).append(i)
        for loop, indexes in loops.items():
            # A closed loop: its callers are gone (their writes committed or not).
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(self._answer, batch, outcomes, indexes)

    def _answer(
        self, batch: list[_Queued], outcomes: list[Outcome] | BaseException, indexes: list[int]
    ) -> None:
        """On the callers' loop: listeners first, then each caller, in commit order."""
        if isinstance(outcomes, BaseException):
            failure = self._failure(outcomes)
            for i in indexes:
                future = batch[i][1]
                if not future.done():
                    future.set_exception(failure)
            return
        for i in indexes:
            future = batch[i][1]
            ok, value, appended = outcomes[i]
            if ok:
                self._notify(appended)  # listeners see the events before the caller
            if future.done():
                continue  # the caller was cancelled; its changes are committed anyway
            if ok:
                future.set_result(value)
            else:
                future.set_exception(self._failure(value))

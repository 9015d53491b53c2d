"""Group commit: writes that arrive together share one transaction and one fsync.

While one batch commits (in a thread), new writes queue; the next batch takes
them all (up to ``MAX_GROUP_COMMIT``). Each body runs in its own savepoint, so
one that raises rolls back alone, and each caller is answered only after the
commit that holds its own changes, listeners first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from eventlog.records import StoredEvent

WriteBody = Callable[[Any], Any]
# (committed, result or exception, events appended) for each body of a batch.
Outcome = tuple[bool, Any, list[StoredEvent]]
RunBatch = Callable[[Sequence[WriteBody]], list[Outcome]]
# Bounds one transaction's length (and so the wait of the first writer in it).
MAX_GROUP_COMMIT = 256


class GroupCommitter:
    """Queues write bodies and commits them in batches on the caller's event loop."""

    def __init__(
        self,
        run_batch: RunBatch,
        notify: Callable[[Sequence[StoredEvent]], None],
        failure: Callable[[BaseException], BaseException],
    ) -> None:
        self._run_batch = run_batch  # blocking: runs in a thread
        self._notify = notify
        self._failure = failure  # the error a caller sees for a store failure
        self._queued: list[tuple[WriteBody, asyncio.Future[Any]]] = []
        self._committing = False
        self._committer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def write(self, body: WriteBody) -> Any:
        """``body``'s result once the transaction holding it has committed."""
        loop = asyncio.get_running_loop()
        if self._committing and self._loop is not loop:
            # Another event loop owns the queue (a second loop in this process): no grouping.
            try:
                [(ok, value, appended)] = await asyncio.to_thread(self._run_batch, [body])
            except Exception as exc:
                raise self._failure(exc) from exc
            if not ok:
                raise self._failure(value)
            self._notify(appended)
            return value
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((body, future))
        if not self._committing:
            self._committing, self._loop = True, loop
            self._committer = asyncio.create_task(self._commit_queued())
        return await future

    async def _commit_queued(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:MAX_GROUP_COMMIT]
                del self._queued[: len(batch)]
                try:
                    outcomes = await asyncio.to_thread(self._run_batch, [b for b, _ in batch])
                except BaseException as exc:
                    # The transaction itself failed (no commit): the whole batch left no trace.
                    failure = self._failure(exc)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), (ok, value, appended) in zip(batch, outcomes, strict=True):
                    if ok:
                        self._notify(appended)  # listeners see the events before the caller
                    if future.done():
                        continue  # the caller was cancelled; its changes are committed anyway
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(self._failure(value))
        finally:
            self._committing = False

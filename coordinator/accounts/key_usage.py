"""KeyUseRecorder: each key's ``last_used_at``, coarse and off the request path.

A successful key check only notes the key id in memory (a dict lookup); at
most once a minute per key (``LAST_USED_GRANULARITY_S``) that note becomes a
pending write, and a background task writes the pending ones in one
transaction every few seconds. A use is not an admin action, so no event is
recorded: the event log stays the record of what people decided.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cachetools import LRUCache

from coordinator.accounts.key_policy import LAST_USED_GRANULARITY_S
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from eventlog.records import utc_now
from eventlog.stopping import wait_or_stop

log = logging.getLogger(__name__)


class KeyUseRecorder:
    """Notes key uses in memory; ``flush`` writes them, ``run`` flushes in the background."""

    def __init__(
        self,
        uow: AccountsUnitOfWork,
        *,
        granularity_s: float = LAST_USED_GRANULARITY_S,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], str] = utc_now,
    ) -> None:
        self._uow = uow
        self.granularity_s = granularity_s
        self._clock = clock
        self._wall_clock = wall_clock
        # When each key's use was last taken for writing (monotonic seconds).
        self._noted: LRUCache[str, float] = LRUCache(max_keys)
        self._pending: dict[str, str] = {}

    def note(self, key_id: str) -> None:
        """Record a use of ``key_id`` now; cheap, never touches the database."""
        now = self._clock()
        last = self._noted.get(key_id)
        if last is not None and now - last < self.granularity_s:
            return
        self._noted[key_id] = now
        self._pending[key_id] = self._wall_clock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write the pending uses in one transaction; returns how many keys were written."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}

        def body(tx: AccountsTransaction) -> None:
            tx.touch_api_keys(batch)

        try:
            await self._uow.write(body)
        except Exception:
            # Keep them for the next flush unless a newer use replaced them meanwhile.
            for key_id, at in batch.items():
                self._pending.setdefault(key_id, at)
            raise
        return len(batch)

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Flush every ``interval_s`` until ``stop`` is set, then once more."""
        while not stop.is_set():
            await wait_or_stop(stop, interval_s)
            try:
                await self.flush()
            except Exception:
                log.warning("last_used_at could not be written; retrying", exc_info=True)

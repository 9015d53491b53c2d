"""Watches the free space each worker reports and tells operations when a store runs short.

A store crossing below its floor is recorded once as ``worker.storage_low`` (the
notifier emails operations); it must climb back above the floor before another
crossing is recorded, so a store hovering at the floor does not flood anyone.
"""

from __future__ import annotations

import asyncio
import logging

from coordinator.accounts import Accounts, RecordStorageLow
from coordinator.hub import WorkerHub
from eventlog.stopping import wait_or_stop

log = logging.getLogger("vectorpanda.storage")

CHECK_EVERY_S = 1.0


class StorageWatch:
    """Remembers which (worker, store) pairs are short; records each new crossing."""

    def __init__(self, hub: WorkerHub, accounts: Accounts) -> None:
        self._hub = hub
        self._accounts = accounts
        self.short: set[tuple[str, str]] = set()

    async def check_once(self) -> list[tuple[str, str]]:
        """Record every store that went short since the last check; return them."""
        crossed = []
        for link in self._hub.live():
            for store, figures in link.space.items():
                free, floor = figures.get("free_bytes"), figures.get("min_free_bytes")
                if free is None or floor is None:
                    continue
                pair = (link.worker_id, store)
                if free >= floor:
                    if pair in self.short:
                        log.warning("worker %s %s store has free space again", *pair)
                        self.short.discard(pair)
                    continue
                if pair in self.short:
                    continue
                log.error(
                    "worker %s %s store is short of space: %d bytes free, floor %d; "
                    "writes there are refused with 507",
                    link.worker_id,
                    store,
                    free,
                    floor,
                )
                await self._accounts.handle(
                    RecordStorageLow(
                        worker_id=link.worker_id,
                        store=store,
                        free_bytes=free,
                        total_bytes=figures.get("total_bytes", 0),
                        min_free_bytes=floor,
                    )
                )
                # only once recorded: a failed record is retried on the next check
                self.short.add(pair)
                crossed.append(pair)
        return crossed

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_once()
            except Exception:  # e.g. the control store is full too: keep watching
                log.exception("could not record a storage crossing")
            await wait_or_stop(stop, CHECK_EVERY_S)

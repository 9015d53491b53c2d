"""Full garbage collections in a worker only while it serves no reads (or rarely).

Python collects its oldest generation whenever the objects that survived earlier
collections have grown by a quarter, and such a collection walks every tracked object
in the process, holding the interpreter lock throughout. A worker's tracked objects are
mostly its tenants' rows (a metadata dict per row, and a list per list-valued field),
so the pause grows with the data it holds: measured in-process with 600k rows whose
metadata has a list field, up to 180 ms per full collection, nine of them (794 ms in
all) in five seconds of one tenant's bulk upserts, during which every tenant's queries
on that worker waited.

So a worker collects its young generations automatically as before (they hold only
recent objects: cheap), and its oldest one itself: once it has served no reads for
``QUIET_S`` and the last full collection is at least ``MIN_INTERVAL_S`` old, and in any
case every ``MAX_INTERVAL_S``. Only reference cycles that outlived two young
collections wait for it (objects without cycles are freed at once, as always).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Automatic collections of the oldest generation happen after this many collections
# of the middle one (Python's default is 10): never, in practice.
NO_AUTOMATIC_FULL = 2**31 - 1
QUIET_S = 1.0
MIN_INTERVAL_S = 30.0
MAX_INTERVAL_S = 600.0
CHECK_EVERY_S = 1.0


def young_collections_only() -> tuple[int, int, int]:
    """Leave the oldest generation to ``FullCollections`` (the young ones stay automatic);
    the thresholds before, to put back."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], NO_AUTOMATIC_FULL)
    return before


class FullCollections:
    """When this worker collects its oldest generation."""

    def __init__(
        self,
        quiet: Callable[[float], bool],
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[], object] = gc.collect,
    ) -> None:
        self._quiet = quiet
        self._clock = clock
        self._collect = collect
        self.last = clock()

    def due(self) -> bool:
        """Whether a full collection should run now."""
        age = self._clock() - self.last
        return age >= MAX_INTERVAL_S or (age >= MIN_INTERVAL_S and self._quiet(QUIET_S))

    def tick(self) -> bool:
        """Run a full collection if one is due; whether it ran."""
        if not self.due():
            return False
        began = time.perf_counter()
        self._collect()
        self.last = self._clock()
        log.debug("full collection took %.1f ms", (time.perf_counter() - began) * 1000)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Take over the oldest generation and look every ``CHECK_EVERY_S`` until ``stop``
        is set (or the task is cancelled); then Python's own thresholds are back."""
        before = young_collections_only()
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), CHECK_EVERY_S)
                except TimeoutError:
                    self.tick()
        finally:
            gc.set_threshold(*before)

"""A collection's ids in ascending order, kept up to date cheaply for listing.

Listing walks ids in UTF-8 byte order, which for str is code point order. Sorting every
id for every page would make a walk of N vectors cost N^2 log N / page_size; instead the
sorted list is built once and new ids are merged into it when the next page is asked
for. Deleted ids stay in the list until the next rebuild: a walk skips ids that are no
longer rows of the table.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

# New ids waiting to be merged are dropped (and the order rebuilt from the table) past
# this many, so a collection written to but never listed holds no growing set.
MAX_PENDING = 100_000


class IdOrder:
    """Sorted ids of a table; safe to call from concurrent readers and one writer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sorted: list[str] | None = None
        self._pending: set[str] = set()

    def added(self, ids: Iterable[str]) -> None:
        """Note ids that may be new (called by every write that can add ids)."""
        with self._lock:
            if self._sorted is None:
                return
            self._pending.update(ids)
            if len(self._pending) > max(MAX_PENDING, len(self._sorted)):
                self._sorted = None
                self._pending.clear()

    def ids(self, live_ids: Sequence[str], live_count: int) -> list[str]:
        """Every live id in ascending order, possibly with some deleted ones among them.

        ``live_ids`` is the table's id list, read under the caller's shared lock. The
        list returned is never changed afterwards, so the caller may walk it freely.
        """
        with self._lock:
            current = self._sorted
            garbage = current is not None and len(current) > 2 * live_count + 1024
            if current is None or garbage:
                current = sorted(live_ids)
            elif self._pending:
                fresh = sorted(i for i in self._pending if not _contains(current, i))
                if fresh:
                    # Two sorted runs: timsort merges them in linear time.
                    current = current + fresh
                    current.sort()
            self._sorted = current
            self._pending.clear()
            return current


def _contains(ordered: list[str], value: str) -> bool:
    at = bisect_left(ordered, value)
    return at < len(ordered) and ordered[at] == value


def start_after(ordered: list[str], after: str | None) -> int:
    """The position of the first id strictly greater than ``after`` (0 for None)."""
    return 0 if after is None else bisect_right(ordered, after)

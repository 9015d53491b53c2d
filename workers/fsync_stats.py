"""How long the WAL's fsyncs take, reported to the coordinator in every heartbeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class FsyncStats:
    """Process-wide fsync counters; safe to update from the store's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._seconds = 0.0
        self._max_since_report = 0.0

    @contextmanager
    def timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - started
            with self._lock:
                self._count += 1
                self._seconds += took
                self._max_since_report = max(self._max_since_report, took)

    def report(self) -> dict[str, float]:
        """Totals (counters) plus the slowest fsync since the previous report."""
        with self._lock:
            worst, self._max_since_report = self._max_since_report, 0.0
            return {
                "wal_fsyncs_total": float(self._count),
                "wal_fsync_seconds_total": self._seconds,
                "wal_fsync_max_ms": worst * 1000,
            }


WAL_FSYNCS = FsyncStats()

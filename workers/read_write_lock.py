"""A lock that lets searches run together while a write has the rows to itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WouldBlock(Exception):
    """The work cannot be done now without waiting (or without long work): do it in a thread."""


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        # The shared holds of the query path take the plain lock (a C context manager)
        # and touch the condition only when they must wait or wake: it is the same lock.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self, wait: bool = True) -> None:
        """Take the lock shared (``reading`` without a context manager, for hot paths);
        with ``wait=False``, raise WouldBlock rather than wait. Pair with release_read."""
        with self._lock:
            while self._writer or self._writers_waiting:
                if not wait:
                    raise WouldBlock
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        """Give back a shared hold; the last reader out wakes the writers waiting."""
        with self._lock:
            self._readers -= 1
            # only writers wait for readers to leave (readers wait for writers)
            if self._readers == 0 and self._writers_waiting:
                self._cond.notify_all()

    @contextmanager
    def reading(self, wait: bool = True) -> Iterator[None]:
        """Hold the lock shared; with ``wait=False``, raise WouldBlock rather than wait."""
        self.acquire_read(wait)
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock exclusively."""
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()

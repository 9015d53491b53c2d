"""The worker's background thread: graph insertion, compaction and index saves, off requests.

Collections ask for a turn with ``request``; the thread gives each one short step at
a time, round robin, so one large collection cannot starve the others. A job that
has more to do says so and goes to the back of the queue.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol

from workers.disk_space import is_out_of_space

log = logging.getLogger(__name__)


class MaintenanceJob(Protocol):
    """Something with background work to do in short steps."""

    def run_maintenance(self) -> bool:
        """Do one step; return True if there is more to do."""
        ...


class Maintenance:
    """One daemon thread running ``MaintenanceJob`` steps, started on first use."""

    _shared: Maintenance | None = None
    _shared_lock = threading.Lock()

    def __init__(self, name: str = "vp-maintenance", autostart: bool = True) -> None:
        self._name = name
        self._autostart = autostart  # False only in tests that step collections by hand
        self._cond = threading.Condition()
        self._queue: deque[MaintenanceJob] = deque()
        self._queued: set[int] = set()
        self._running = False
        self._thread: threading.Thread | None = None

    @classmethod
    def shared(cls) -> Maintenance:
        """The process-wide instance (one background thread per worker process)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def request(self, job: MaintenanceJob) -> None:
        """Give ``job`` a turn soon (no-op if it is already waiting)."""
        with self._cond:
            if id(job) in self._queued:
                return
            self._queued.add(id(job))
            self._queue.append(job)
            if self._autostart and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is queued or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._running, timeout)

    @property
    def pending(self) -> int:
        """Jobs waiting for a turn."""
        with self._cond:
            return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                job = self._queue.popleft()
                self._queued.discard(id(job))
                self._running = True
            more = False
            try:
                more = job.run_maintenance()
            except Exception as exc:
                if is_out_of_space(exc):
                    # expected on a full disk, retried on a later turn: no traceback flood
                    log.warning("background maintenance step needs disk space: %s", exc)
                else:
                    log.exception("background maintenance step failed")
            with self._cond:
                self._running = False
                if more and id(job) not in self._queued:
                    self._queued.add(id(job))
                    self._queue.append(job)
                self._cond.notify_all()

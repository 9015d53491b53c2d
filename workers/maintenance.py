"""The worker's background thread: graph insertion, compaction and index saves, off requests.

Collections ask for a turn with ``request``; the thread gives each one short step at
a time, round robin, so one large collection cannot starve the others. A job that
has more to do says so and goes to the back of the queue.

Graph building may use every core, but only while the process serves no reads: the
request threads run FAISS with one OpenMP thread each (``workers.main``), and OpenMP's
thread count is per calling thread, so ``build_threads`` only widens this thread's
own FAISS calls. Workers run with ``OMP_WAIT_POLICY=PASSIVE`` so that idle OpenMP
threads sleep instead of spinning on cores the queries need.

The same holds for a long exact scan: its parts go to the other cores too while the
machine is otherwise idle (``cores_spare``, workers.flat_index).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol

from workers.disk_space import is_out_of_space
from workers.flat_index import ScanHelpers
from workers.heap import give_back

log = logging.getLogger(__name__)

# Reads must have been absent this long before graph building takes every core: a
# steady stream of queries has gaps far shorter than this between its requests.
QUIET_S = 0.25


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota
    (a container limited to 2 CPUs on a 64-core host must not start 64 threads)."""
    try:
        cores = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cores = min(cores, max(int(int(quota) / int(period)), 1))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity stands
    return cores


class Activity:
    """Reads in flight in this process, and when the last one ended (and whose it was).

    Written by the event loop only; the maintenance thread and the scan helpers read
    plain values and need only to see changes eventually. A read's tenant is None when
    it is not one tenant's (a micro-batch of quick queries): it counts as anyone's.
    """

    __slots__ = ("alone", "in_flight", "last_end", "last_tenant", "other_end")

    def __init__(self) -> None:
        self.in_flight = 0
        # -inf: never. Not 0.0, which time.monotonic() (seconds since boot here) is
        # close to on a machine started within the hour.
        self.last_end = -math.inf
        self.last_tenant: str | None = None
        # When a read of a tenant other than ``last_tenant`` last ended
        self.other_end = -math.inf
        # The tenant of the read in flight while it is the only one (else None)
        self.alone: str | None = None

    def began(self, tenant: str | None = None) -> None:
        self.in_flight += 1
        self.alone = tenant if self.in_flight == 1 else None

    def ended(self, tenant: str | None = None) -> None:
        self.in_flight -= 1
        now = time.monotonic()
        if tenant is None or tenant != self.last_tenant:
            self.other_end = self.last_end if tenant is not None else now
        self.last_tenant = tenant
        self.last_end = now

    def quiet(self, for_s: float = QUIET_S) -> bool:
        """Whether no read runs now nor ended within the last ``for_s`` seconds."""
        return self.in_flight <= 0 and time.monotonic() - self.last_end >= for_s

    def alone_for(self, for_s: float = QUIET_S) -> bool:
        """Whether one tenant's read is the only one running, and no other tenant's read
        (nor a batch of anyone's) ended within the last ``for_s`` seconds: the tenant's
        own earlier queries do not count against it."""
        tenant = self.alone
        if self.in_flight != 1 or tenant is None:
            return False
        others = self.other_end if self.last_tenant == tenant else self.last_end
        return time.monotonic() - others >= for_s


def runnable_tasks(path: Path = Path("/proc/loadavg")) -> int | None:
    """Threads runnable on this machine right now (the kernel's count, running ones
    included), or None where that is not known."""
    try:
        return int(path.read_text(encoding="ascii").split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


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
        self.activity = Activity()
        self.cores = usable_cores()
        # Spare cores for a long exact scan (workers.flat_index)
        self.scans = ScanHelpers(self.cores, self.cores_spare)

    def cores_spare(self) -> bool:
        """Whether a scan may take more cores now: its read is this process's only one,
        no other tenant's read ended within ``QUIET_S``, and no thread on the machine
        waits for a core (the scan's own threads aside). Asked before each part."""
        if not self.activity.alone_for():
            return False
        runnable = runnable_tasks()
        return runnable is not None and runnable <= self.cores

    def build_threads(self) -> int:
        """FAISS threads for the next graph-building step: every core while no reads run."""
        return self.cores if self.cores > 1 and self.activity.quiet() else 1

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
                idle = not self._queue
                self._cond.notify_all()
            if idle:
                # The work (graph insertion, compaction) left free pages in this thread's
                # and OpenMP's malloc arenas: hand them back while there is nothing to do.
                give_back()

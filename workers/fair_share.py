"""The worker's request threads, shared fairly between tenants.

Work that leaves the event loop (filtered queries, scans, writes) waits here for one
of the worker's threads. Each tenant may hold only ``per_tenant`` threads at once and
queue only ``queue_per_tenant`` more; when a thread frees, waiting tenants are served
in turn (round robin), so a tenant that sends many expensive requests waits behind
its own requests, never the other tenants behind it.

It also keeps each tenant's busy time (thread-seconds in its slots), which the worker
reports in its heartbeat: the coordinator's rebalancer sees a tenant that keeps the
worker busy with few but expensive requests, which a request rate would not show.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager, suppress

from workers.errors import StoreError
from workers.protocol import ErrorCode

_CORES = os.cpu_count() or 1
# FAISS and numpy release the GIL, so more threads than cores still help. A tenant
# may use all cores but one: the last core (and the GIL's turns) stays for the others.
# VP_WORKER_THREADS, VP_WORKER_TENANT_THREADS and VP_WORKER_TENANT_QUEUE override these.
WORKER_THREADS = 4 * max(_CORES, 2)
TENANT_THREADS = max(_CORES - 1, 1)
TENANT_QUEUE = 128


class FairShare:
    """Thread slots with a per-tenant cap and a round-robin queue across tenants."""

    def __init__(
        self,
        slots: int | None = None,
        per_tenant: int | None = None,
        queue_per_tenant: int = TENANT_QUEUE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        slots = WORKER_THREADS if slots is None else slots
        per_tenant = TENANT_THREADS if per_tenant is None else per_tenant
        if slots < 1 or per_tenant < 1 or queue_per_tenant < 0:
            raise ValueError("slots and per_tenant must be positive, queue_per_tenant >= 0")
        self.slots = slots
        self.per_tenant = min(per_tenant, slots)
        self.queue_per_tenant = queue_per_tenant
        self._free = slots
        self.running: dict[str, int] = {}
        self._clock = clock
        # Thread-seconds each tenant held slots for, up to _since[tenant] (while running).
        self._busy: dict[str, float] = {}
        self._since: dict[str, float] = {}
        # Tenants with waiting requests, in the order they will next be served.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    def waiting(self, tenant: str) -> int:
        """Requests of ``tenant`` queued for a thread."""
        return len(self._waiting.get(tenant, ()))

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """Hold one of the tenant's thread slots for the body; BUSY if its queue is full."""
        await self._acquire(tenant)
        try:
            yield
        finally:
            self._release(tenant)

    async def _acquire(self, tenant: str) -> None:
        room = self._free > 0 and self.running.get(tenant, 0) < self.per_tenant
        if room and not self._waiting.get(tenant):
            self._take(tenant)
            return
        queue = self._waiting.get(tenant)
        if queue is None:
            queue = self._waiting[tenant] = deque()
        if len(queue) >= self.queue_per_tenant:
            raise StoreError(
                ErrorCode.BUSY, "too many of this client's requests are waiting; retry shortly"
            )
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(tenant)  # granted just as we were cancelled: give it back
            else:
                self._forget(tenant, granted)
            raise

    def busy_seconds(self, keep: Collection[str]) -> dict[str, float]:
        """Thread-seconds each tenant has held slots for, running requests included.

        Counters only grow while a tenant stays in ``keep`` (the tenants this worker
        owns); others are forgotten once idle, so a tenant that comes back starts at 0.
        """
        now = self._clock()
        for tenant in [t for t in self._busy if t not in keep and t not in self.running]:
            del self._busy[tenant]
        report = {}
        for tenant, seconds in self._busy.items():
            running = self.running.get(tenant, 0)
            report[tenant] = seconds + running * (now - self._since.get(tenant, now))
        return report

    def charge(self, tenant: str, seconds: float) -> None:
        """Add work done outside the slots (quick queries on the event loop) to the
        tenant's busy time."""
        self._busy[tenant] = self._busy.get(tenant, 0.0) + seconds

    def _account(self, tenant: str) -> None:
        """Add the time since the tenant's last change, times its slots, to its busy time."""
        now = self._clock()
        running = self.running.get(tenant, 0)
        if running:
            self._busy[tenant] += running * (now - self._since[tenant])
        else:
            self._busy.setdefault(tenant, 0.0)
        self._since[tenant] = now

    def _take(self, tenant: str) -> None:
        self._account(tenant)
        self._free -= 1
        self.running[tenant] = self.running.get(tenant, 0) + 1

    def _release(self, tenant: str) -> None:
        self._account(tenant)
        self._free += 1
        left = self.running[tenant] - 1
        if left:
            self.running[tenant] = left
        else:
            del self.running[tenant]
            del self._since[tenant]
        self._dispatch()

    def _forget(self, tenant: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiting.get(tenant)
        if queue is None:
            return
        with suppress(ValueError):
            queue.remove(waiter)
        if not queue:
            del self._waiting[tenant]

    def _dispatch(self) -> None:
        """Hand free slots to waiting tenants in turn, skipping those at their cap."""
        progress = True
        while self._free > 0 and progress:
            progress = False
            for tenant in list(self._waiting):
                if self._free == 0:
                    break
                if self.running.get(tenant, 0) >= self.per_tenant:
                    continue
                queue = self._waiting[tenant]
                waiter = queue.popleft()
                if not queue:
                    del self._waiting[tenant]
                else:
                    self._waiting.move_to_end(tenant)  # its next turn comes after the others
                if waiter.done():
                    continue  # cancelled while queued
                self._take(tenant)
                waiter.set_result(None)
                progress = True

"""The health tracker: declares a worker down after missed heartbeats."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter
from eventlog.stopping import wait_or_stop

log = logging.getLogger("vectorpanda.health")


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Heartbeat timing: a worker is down after ``missed`` silent intervals."""

    interval_s: float = 1.0
    missed: int = 3

    @property
    def down_after_s(self) -> float:
        return self.interval_s * self.missed

    def is_down(self, heartbeat_age_s: float) -> bool:
        return heartbeat_age_s > self.down_after_s


class HealthTracker:
    """Checks every live worker's heartbeat age and marks silent ones down.

    With a router it also rebalances hot tenants every ``rebalance_every_s`` and retries
    the hand-over of unservable tenants.
    """

    def __init__(
        self,
        hub: WorkerHub,
        policy: HealthPolicy,
        router: TenantRouter | None = None,
        rebalance_every_s: float = 10.0,
    ) -> None:
        self._hub = hub
        self.policy = policy
        self._router = router
        self._rebalance_every_s = rebalance_every_s

    async def check_once(self) -> list[str]:
        """Mark down every worker whose heartbeat is too old; return their ids."""
        downed = []
        for link in self._hub.live():
            age = link.heartbeat_age()
            if self.policy.is_down(age):
                downed.append(link.worker_id)
                await self._hub.mark_down(link, f"missed heartbeats for {age:.1f}s")
        return downed

    async def run(self, stop: asyncio.Event) -> None:
        """Check at a quarter of the heartbeat interval until ``stop`` is set."""
        period = self.policy.interval_s / 4
        next_rebalance = time.monotonic() + self._rebalance_every_s
        rebalancing: asyncio.Task[object] | None = None
        healing: asyncio.Task[None] | None = None
        while not stop.is_set():
            try:
                await self.check_once()
                if self._router is not None and time.monotonic() >= next_rebalance:
                    next_rebalance = time.monotonic() + self._rebalance_every_s
                    if rebalancing is None or rebalancing.done():
                        # a move waits for in-flight requests; never hold up health checks
                        rebalancing = asyncio.create_task(self._router.rebalance_once())
                if self._router is not None and (healing is None or healing.done()):
                    # unservable tenants: retry their hand-over (with backoff) and alert
                    healing = asyncio.create_task(self._router.heal_once())
            except Exception:  # the tracker must outlive any single failure
                log.exception("health check failed")
            await wait_or_stop(stop, period)

"""The health tracker: declares a worker down after missed heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from coordinator.hub import WorkerHub

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
    """Checks every live worker's heartbeat age and marks silent ones down."""

    def __init__(self, hub: WorkerHub, policy: HealthPolicy) -> None:
        self._hub = hub
        self.policy = policy

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
        while not stop.is_set():
            try:
                await self.check_once()
            except Exception:  # the tracker must outlive any single failure
                log.exception("health check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

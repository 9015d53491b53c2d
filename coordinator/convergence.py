"""Ownership convergence, part of the router: placement agrees with what workers hold.

Every heartbeat lists the tenants a worker holds (owns, with the directory lock).
The router adopts a held tenant nobody owns, has a worker release a tenant placed
elsewhere, drops an assignment its owner no longer reports, releases a tenant on
its old holder before assigning it to another worker, and retries a failed
hand-over in the background with backoff, alerting operations once past the bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coordinator.errors import TenantUnavailable
from coordinator.hub import WorkerGone, WorkerHub, WorkerLink
from coordinator.unservable import UnservableTenants
from workers.protocol import Frame, Op

log = logging.getLogger("vectorpanda.router")

# An assignment the owner's heartbeats have not listed for this long is gone
# (the worker's lease ran out and it let the tenant go): the next request re-assigns.
REPORT_GRACE_S = 3.0
# Deadline of one background hand-over attempt.
HEAL_ATTEMPT_S = 5.0
_UNLOCKED = asyncio.Lock()  # stands in for a tenant that never had an assign lock

AlertHook = Callable[[str, float, str], Awaitable[None]]  # (tenant, seconds, reason)


async def no_alert(tenant: str, seconds: float, reason: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Assignment:
    """A tenant's owner and the epoch of that ownership."""

    worker_id: str
    epoch: int
    at: float = field(default=0.0, compare=False)  # monotonic time the worker confirmed it


class OwnershipConvergence:
    """Mixin of ``TenantRouter`` (which owns the state declared here)."""

    _hub: WorkerHub
    _timeout_s: float
    _assignments: dict[str, Assignment]
    _assign_locks: dict[str, asyncio.Lock]
    _reconciling: set[str]
    _background: set[asyncio.Task[None]]
    draining: set[str]
    unservable: UnservableTenants
    on_unservable_alert: AlertHook

    async def _exchange(
        self,
        link: WorkerLink,
        header: dict[str, Any],
        arrays: dict[str, np.ndarray] | None,
        deadline: float,
    ) -> Frame:
        raise NotImplementedError

    async def _owner(self, tenant: str, deadline: float) -> tuple[WorkerLink, int]:
        raise NotImplementedError

    def _follows(self) -> bool:
        return False

    def _served(self, tenant: str) -> None:
        out_for = self.unservable.served(tenant)
        if out_for is not None:
            log.warning("tenant %s is served again after %.1f s", tenant, out_for)

    async def _release_on(self, link: WorkerLink, tenant: str, epoch: int, deadline: float) -> bool:
        """Ask ``link`` to let go of ``tenant`` held at ``epoch``; True once it has."""
        release = {"op": Op.RELEASE.value, "tenant": tenant, "epoch": epoch}
        try:
            reply = await self._exchange(link, release, None, deadline)
        except (TenantUnavailable, WorkerGone) as exc:
            log.warning("worker %s did not release %s: %s", link.worker_id, tenant, exc)
            return False
        if not reply.header.get("ok"):
            log.warning("release of %s by %s: %s", tenant, link.worker_id, reply.header)
            return False
        if link.held is not None:
            link.held.pop(tenant, None)
        return True

    async def _clear_holders(self, tenant: str, target: WorkerLink, deadline: float) -> WorkerLink:
        """Before ``tenant`` goes to ``target``, have any other live worker holding it let go.

        A holder that will not let go keeps the tenant (unless it is draining): assigning
        it elsewhere would only be refused, the lock being taken.
        """
        for link in self._hub.live():
            epoch = (link.held or {}).get(tenant)
            if link is target or epoch is None:
                continue
            log.warning("tenant %s is still held by %s; releasing it there", tenant, link.worker_id)
            released = await self._release_on(link, tenant, epoch, deadline)
            if not released and link.worker_id not in self.draining:
                return link
        return target

    def _reconcile(self, link: WorkerLink) -> None:
        """Heartbeat listener: make placement agree with what ``link`` says it holds."""
        held = link.held or {}
        now = time.monotonic()
        for tenant, current in list(self._assignments.items()):
            if (
                current.worker_id == link.worker_id
                and tenant not in held
                and now - current.at > REPORT_GRACE_S
                and not self._assign_locks.get(tenant, _UNLOCKED).locked()
            ):
                log.warning("%s no longer holds %s; it will be re-assigned", link.worker_id, tenant)
                self._assignments.pop(tenant, None)
        strays = {
            tenant: epoch
            for tenant, epoch in held.items()
            if (a := self._assignments.get(tenant)) is None or a.worker_id != link.worker_id
        }
        if strays and link.worker_id not in self._reconciling:
            self._reconciling.add(link.worker_id)
            task = asyncio.create_task(self._settle_strays(link, strays))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _settle_strays(self, link: WorkerLink, strays: dict[str, int]) -> None:
        """Adopt tenants a worker holds that nobody owns; have it release the others."""
        try:
            for tenant, epoch in strays.items():
                lock = self._assign_locks.setdefault(tenant, asyncio.Lock())
                async with lock:
                    current = self._assignments.get(tenant)
                    still_held = (link.held or {}).get(tenant) == epoch
                    if not link.alive or not still_held:
                        continue
                    if current is not None and current.worker_id == link.worker_id:
                        continue
                    if current is None and link.worker_id not in self.draining:
                        # It holds the lock and accepts this epoch: serving from there is free.
                        self._assignments[tenant] = Assignment(
                            link.worker_id, epoch, time.monotonic()
                        )
                        log.info("tenant %s adopted where it is held: %s", tenant, link.worker_id)
                        self._served(tenant)
                        continue
                    deadline = time.monotonic() + self._timeout_s
                    await self._release_on(link, tenant, epoch, deadline)
        except Exception:  # a heartbeat listener's task must never die silently
            log.exception("reconciling worker %s failed", link.worker_id)
        finally:
            self._reconciling.discard(link.worker_id)

    async def heal_once(self) -> None:
        """Retry the hand-over of every unservable tenant that is due; alert past the bound."""
        if self._follows():
            return
        for tenant in self.unservable.due():
            deadline = time.monotonic() + min(self._timeout_s, HEAL_ATTEMPT_S)
            try:
                await self._owner(tenant, deadline)
            except (TenantUnavailable, WorkerGone) as exc:
                if tenant in self.unservable.due():  # not already pushed back by _assign
                    self.unservable.failed(tenant, str(exc))
            else:
                self._served(tenant)
        for tenant, outage in self.unservable.to_alert():
            seconds = time.monotonic() - outage.since
            log.error(
                "tenant %s has been unservable for %.0f s: %s", tenant, seconds, outage.reason
            )
            try:
                await self.on_unservable_alert(tenant, seconds, outage.reason)
            except Exception:
                log.exception("could not raise the alert for tenant %s", tenant)

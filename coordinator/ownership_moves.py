"""Ownership moves, the router's other half: who owns a tenant, and handing it on.

``TenantRouter`` (router.py) finds a tenant's owner and exchanges frames with it;
this mixin changes ownership: assign a tenant with a fresh epoch, move it to another
worker, release it, drain a worker, rebalance hot tenants, and (through
``OwnershipConvergence``) agree with what workers report they hold.

Only the coordinator that leads placement runs these (coordinator/leader.py); a
follower coordinator process asks the leader instead (coordinator/follower.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.convergence import Assignment, OwnershipConvergence
from coordinator.cost_watch import CostWatch
from coordinator.errors import TenantUnavailable
from coordinator.follower import FollowerPlacement
from coordinator.hub import WorkerGone, WorkerLink
from coordinator.placement import Candidate, Move, choose_owner
from workers.protocol import TENANT_PAUSED_MESSAGE, Op

log = logging.getLogger("vectorpanda.router")


class OwnershipMoves(OwnershipConvergence):
    """Mixin of ``TenantRouter`` (which owns the state declared here)."""

    _inflight: dict[str, int]
    _idle: dict[str, asyncio.Event]
    _hits: dict[str, int]
    _sampled_at: float
    cost_watch: CostWatch
    placement_changes: int
    tenant_keys: Callable[[str], Awaitable[dict[str, Any] | None]]

    follower: FollowerPlacement | None
    leading: Callable[[], bool]

    def _next_epoch(self) -> int:
        raise NotImplementedError

    def _follows(self) -> bool:
        return self.follower is not None and not self.leading()

    def tenants_of(self, worker_id: str) -> list[str]:
        if self._follows():  # a follower knows what the workers report they hold
            link = self._hub.links.get(worker_id)
            return list((link.held or {}) if link is not None else {})
        return [t for t, a in self._assignments.items() if a.worker_id == worker_id]

    async def _forget_worker(self, link: WorkerLink) -> None:
        self.draining.discard(link.worker_id)
        lost = self.tenants_of(link.worker_id)
        for tenant in lost:
            self._assignments.pop(tenant, None)
        if lost:
            log.warning("worker %s lost; %d tenants will be reassigned", link.worker_id, len(lost))

    def _weight(self, worker_id: str) -> float:
        """Less loaded workers weigh more, so new tenants lean towards them."""
        return 1.0 / (1.0 + len(self.tenants_of(worker_id)))

    async def _assign(self, tenant: str, link: WorkerLink, deadline: float) -> int:
        epoch = self._next_epoch()
        header: dict[str, Any] = {"op": Op.ASSIGN.value, "tenant": tenant, "epoch": epoch}
        try:
            keys = await self.tenant_keys(tenant)
        except Exception:
            log.exception("data keys of tenant %s are unavailable", tenant)
            self.unservable.failed(tenant, "its data keys are unavailable")
            raise TenantUnavailable(
                "The tenant cannot be loaded right now; retry shortly.", retry_after=2
            ) from None
        if keys is not None:
            header["keys"] = keys  # never logged
        try:
            reply = await self._exchange(link, header, None, deadline)
        except (TenantUnavailable, WorkerGone):
            self.unservable.failed(tenant, f"worker {link.worker_id} did not answer ASSIGN")
            raise
        if not reply.header.get("ok"):
            err = reply.header.get("error") or {}
            log.error("worker %s refused tenant %s: %s", link.worker_id, tenant, err)
            if err.get("message") != TENANT_PAUSED_MESSAGE:  # paused on purpose: not an outage
                self.unservable.failed(tenant, f"worker {link.worker_id}: {err.get('message')}")
            raise TenantUnavailable(
                "The tenant cannot be loaded right now; retry shortly.", retry_after=2
            )
        self._assignments[tenant] = Assignment(link.worker_id, epoch, time.monotonic())
        if link.held is not None:  # until its next heartbeat says so itself
            link.held[tenant] = epoch
        self.placement_changes += 1
        log.info("tenant %s assigned to %s at epoch %d", tenant, link.worker_id, epoch)
        self._served(tenant)
        return epoch

    async def move(self, tenant: str, to_worker: str) -> None:
        """Hand a tenant to another worker without failing its requests.

        New requests wait on the tenant's lock while in-flight ones finish;
        the old owner releases (unloads, unlocks), the new one is assigned.
        """
        deadline = time.monotonic() + self._timeout_s
        if self.follower is not None and self._follows():
            await self.follower.leader.call("move", {"tenant": tenant, "to": to_worker}, deadline)
            return
        lock = self._assign_locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            target = self._hub.links.get(to_worker)
            if target is None or not target.alive:
                raise TenantUnavailable(f"worker {to_worker} is not live")
            current = self._assignments.get(tenant)
            if current is not None and current.worker_id == to_worker:
                return
            await self._drained(tenant, deadline)
            if current is not None:
                old = self._hub.links.get(current.worker_id)
                self._assignments.pop(tenant, None)
                if old is not None and old.alive:
                    release = {"op": Op.RELEASE.value, "tenant": tenant, "epoch": current.epoch}
                    reply = await self._exchange(old, release, None, deadline)
                    if not reply.header.get("ok"):
                        log.warning("release of %s by %s: %s", tenant, old.worker_id, reply.header)
            await self._assign(tenant, target, deadline)

    async def release(self, tenant: str) -> None:
        """Unload a tenant from its owner after its in-flight requests, and assign it nowhere.

        Used before its files move between hot and cold; the next request assigns it again.
        """
        deadline = time.monotonic() + self._timeout_s
        if self.follower is not None and self._follows():
            await self.follower.leader.call("release", {"tenant": tenant}, deadline)
            return
        self.unservable.forget(tenant)
        lock = self._assign_locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            await self._drained(tenant, deadline)
            current = self._assignments.pop(tenant, None)
            if current is None:
                return
            old = self._hub.links.get(current.worker_id)
            if old is not None and old.alive:
                release = {"op": Op.RELEASE.value, "tenant": tenant, "epoch": current.epoch}
                reply = await self._exchange(old, release, None, deadline)
                if not reply.header.get("ok"):
                    raise TenantUnavailable(f"worker {old.worker_id} did not release {tenant}")

    async def drain(self, worker_id: str) -> list[str]:
        """Move every tenant off a worker and keep new ones away until it reconnects."""
        if self.follower is not None and self._follows():
            deadline = time.monotonic() + self._timeout_s * 10
            answer = await self.follower.leader.call("drain", {"worker_id": worker_id}, deadline)
            return [str(t) for t in answer.get("moved", [])]
        self.draining.add(worker_id)
        moved = []
        for tenant in self.tenants_of(worker_id):
            live = [w.worker_id for w in self._hub.live() if w.worker_id not in self.draining]
            target = choose_owner(tenant, [Candidate(w, self._weight(w)) for w in live])
            if target is None:
                raise TenantUnavailable("no other live worker to drain to")
            await self.move(tenant, target)
            moved.append(tenant)
        return moved

    def sample_rates(self) -> dict[str, dict[str, float]]:
        """Requests per second per tenant since the last sample, grouped by owner."""
        now = time.monotonic()
        elapsed = max(now - self._sampled_at, 1e-3)
        rates: dict[str, dict[str, float]] = {
            w.worker_id: {} for w in self._hub.live() if w.worker_id not in self.draining
        }
        for tenant, hits in self._hits.items():
            owner = self._assignments.get(tenant)
            if owner is not None and owner.worker_id in rates:
                rates[owner.worker_id][tenant] = hits / elapsed
        self._hits.clear()
        self._sampled_at = now
        return rates

    def sample_busy(self) -> dict[str, dict[str, float]]:
        """Busy threads per tenant since the last sample (cost_watch.py), grouped by owner."""
        links = [w for w in self._hub.live() if w.worker_id not in self.draining]
        return self.cost_watch.sample(links, self._owner_id)

    def _owner_id(self, tenant: str) -> str | None:
        current = self._assignments.get(tenant)
        return None if current is None else current.worker_id

    async def rebalance_once(self) -> Move | None:
        """Move one tenant if the load calls for it: first a tenant that saturates a
        worker it shares (busy time), else a hot one off an overloaded worker (rates)."""
        if self._follows():
            return None
        now = time.monotonic()
        move = self.cost_watch.plan(self.sample_rates(), self.sample_busy(), now)
        if move is not None:
            log.info("moving hot tenant %s from %s to %s", move.tenant, move.source, move.target)
            await self.move(move.tenant, move.target)
            self.cost_watch.moved(move.tenant, time.monotonic())
        return move

    async def _drained(self, tenant: str, deadline: float) -> None:
        while self._inflight.get(tenant, 0) > 0:
            idle = self._idle.setdefault(tenant, asyncio.Event())
            idle.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TenantUnavailable("the tenant did not drain in time")
            try:
                await asyncio.wait_for(idle.wait(), remaining)
            except TimeoutError:
                continue

"""The request router: sends a tenant's frames to the worker that owns it.

Ownership is assigned lazily: the first request for a tenant picks a live
worker by rendezvous hashing and sends it ASSIGN with a fresh epoch; every
data frame carries that epoch, and a worker refuses frames for a tenant it
does not own at exactly that epoch. When the owner's socket closes, its
assignments are dropped and idempotent requests are retried once on the new
owner.

A write whose frame went out but whose answer never came (the socket closed,
or the deadline passed) has an unknown outcome: the worker may have applied
it. Such a write is retried on the new owner when it is idempotent and
answered with the retry's result; otherwise, or if the retry does not succeed,
it is answered ``OutcomeUnknown``, never with an error that claims nothing was
written.

This module is the routing half (find the owner, exchange frames, deadlines and
cancellation, retries); changing ownership (assign, move, release, drain, rebalance)
is ``ownership_moves.py``, agreeing with what workers hold is ``convergence.py``, and
a follower coordinator process's way of finding owners is ``follower.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from coordinator.admission import ClientAdmission, RecentClients
from coordinator.convergence import AlertHook, Assignment, no_alert
from coordinator.cost_watch import CostWatch
from coordinator.errors import OutcomeUnknown, TenantUnavailable, WorkerRefused
from coordinator.follower import FollowerPlacement
from coordinator.hub import WorkerGone, WorkerHub, WorkerLink
from coordinator.ownership_moves import OwnershipMoves
from coordinator.placement import Candidate, choose_owner
from coordinator.unservable import UnservableTenants
from workers.protocol import ErrorCode, Frame, Op

log = logging.getLogger("vectorpanda.router")

# How long a request waits for some worker to appear before answering 503.
WAIT_FOR_WORKER_S = 3.0
# Filtered queries and deletes of one tenant in flight at once; more wait here, behind
# the tenant's own, so a tenant flooding expensive filters does not crowd the worker
# its neighbours share. Measured (tests/integration/test_noisy_neighbour.py, 2 cores,
# 4 runs each): B's p50 beside A 16-19 ms at 1 in flight, 29-34 ms at 2 (and B's p99
# 5x worse again at 8), for the same throughput of A: its worker runs one request of a
# tenant at a time there anyway (cores - 1 threads per tenant). With more cores per
# worker, raising VP_CLIENT_MAX_FILTERED_RUNNING lets one client's filters use them.
TENANT_FILTERED_INFLIGHT = 1
# While other clients are being served (one was routed within CONTENDED_WINDOW_S), a
# client's filtered requests may keep the service busy a quarter of the time: after
# one that took longer than FILTERED_FREE_S (cheap filters never do), its next waits
# three times the excess (coordinator/admission.py). On a shared 2-core machine
# (load 6-15 from other work), client A flooding 50,000-operand filters took B's
# simple-query p50 to 3-9x its p50 alone and its p99 to 3-8x; paced, p50 1.0-1.6x and
# p99 1.3-1.8x in most rounds (benchmarks/noisy_split.py, test_noisy_neighbour.py).
# A pays, only while others are served: ~14 filters/s instead of 40-47 at load 6-8.
FILTERED_SHARE = 0.25
FILTERED_FREE_S = 0.005
CONTENDED_WINDOW_S = 1.0
# Past the admission gate's own per-client bound, so a request waits until its deadline.
TENANT_FILTERED_WAITING = 1024


# Frames that change stored data: their outcome matters when an answer is lost.
WRITE_OPS = frozenset(
    {
        Op.UPSERT,
        Op.DELETE,
        Op.UPDATE_METADATA,
        Op.CREATE_COLLECTION,
        Op.DELETE_COLLECTION,
        Op.DELETE_TENANT,
    }
)
_UNKNOWN = (
    "The worker handling this write went away before answering, so it may or may not "
    "have been applied; repeating the same request is safe."
)


class FrameLost(WorkerGone):
    """The frame was sent, then the worker's socket closed before it replied."""


class ReplyOverdue(TenantUnavailable):
    """The frame was sent, and no reply came before the deadline."""


def _overdue(fut: asyncio.Future[Frame]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _ignore_frame(op: str, outcome: str, seconds: float) -> None:
    return None


def _ignore_cost(tenant: str, cost: int) -> None:
    return None


async def _no_keys(tenant: str) -> dict[str, Any] | None:
    return None


def _always() -> bool:
    return True


class TenantRouter(OwnershipMoves):
    """Routes data frames to tenant owners with deadlines and one retry."""

    def __init__(
        self,
        hub: WorkerHub,
        timeout_s: float,
        unavailable_alert_s: float = 30.0,
        filtered_in_flight: int = TENANT_FILTERED_INFLIGHT,
        *,
        cost_watch: CostWatch | None = None,
        on_unservable_alert: AlertHook = no_alert,
        charge_cost: Callable[[str, int], None] = _ignore_cost,
        tenant_keys: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None,
        leading: Callable[[], bool] | None = None,
        follower: FollowerPlacement | None = None,
        filtered_share: float = FILTERED_SHARE,
        recent_clients: RecentClients | None = None,
    ) -> None:
        self._hub = hub
        self._timeout_s = timeout_s
        self._assignments: dict[str, Assignment] = {}
        self._assign_locks: dict[str, asyncio.Lock] = {}
        self._inflight: dict[str, int] = {}
        self._idle: dict[str, asyncio.Event] = {}
        self._hits: dict[str, int] = {}
        # A client's filtered requests (the expensive kind): a few at a time, the rest wait.
        self._filtered = ClientAdmission(
            filtered_in_flight,
            TENANT_FILTERED_WAITING,
            share=filtered_share,
            free_s=FILTERED_FREE_S,
            contended=self._others_served,
        )
        # Who was routed lately (several coordinator processes: in any of them).
        self.recent_clients = recent_clients or RecentClients(CONTENDED_WINDOW_S)
        # what each tenant costs its worker (heartbeats' busy time), for the rebalancer
        self.cost_watch = cost_watch if cost_watch is not None else CostWatch()
        self._sampled_at = time.monotonic()
        self.draining: set[str] = set()
        self.placement_changes = 0
        # metrics hook: (op, outcome, seconds) per frame exchanged with a worker
        self.observe_frame: Callable[[str, str, float], None] = _ignore_frame
        # ownership convergence: outages retried with backoff, alert hook (tenant, seconds, why)
        self.unservable = UnservableTenants(unavailable_alert_s)
        self.on_unservable_alert: AlertHook = on_unservable_alert
        self._reconciling: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        # rate-limit hook: (tenant, cost) for each worker reply that reports the work done
        self.charge_cost: Callable[[str, int], None] = charge_cost
        # encryption at rest: the tenant's unwrapped data keys, sent with ASSIGN (None: none)
        self.tenant_keys: Callable[[str], Awaitable[dict[str, Any] | None]] = (
            tenant_keys or _no_keys
        )
        # Epochs only grow: a base from the wall clock at start-up (so a
        # restarted coordinator issues higher epochs) plus a counter.
        self._epoch = time.time_ns()
        # Several coordinator processes (coordinator/leader.py): ``leading`` says whether
        # this one places tenants; when it does not, ``follower`` finds owners instead.
        self.leading: Callable[[], bool] = leading or _always
        self.follower: FollowerPlacement | None = follower
        hub.on_leave.append(self._forget_worker)
        hub.on_held.append(self._on_held)

    def _on_held(self, link: WorkerLink) -> None:
        if self.leading():
            self._reconcile(link)

    def forget_assignment(self, tenant: str, worker_id: str, epoch: int) -> None:
        """A worker refused ``tenant`` at ``epoch`` (NOT_OWNER): if that is our assignment,
        drop it, so the next request places the tenant again."""
        current = self._assignments.get(tenant)
        if current is not None and (current.worker_id, current.epoch) == (worker_id, epoch):
            lock = self._assign_locks.get(tenant)
            if lock is None or not lock.locked():
                del self._assignments[tenant]

    def adopt_held(self) -> int:
        """On becoming the leader: own what the workers hold, epochs above theirs."""
        adopted = 0
        now = time.monotonic()
        # above anything the previous leader issued (its base was its own start-up time)
        self._epoch = max(self._epoch, time.time_ns())
        for link in self._hub.live():
            for tenant, epoch in (link.held or {}).items():
                self._epoch = max(self._epoch, epoch)
                current = self._assignments.get(tenant)
                if current is None or current.epoch < epoch:
                    self._assignments[tenant] = Assignment(link.worker_id, epoch, now)
                    adopted += 1
        return adopted

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @property
    def assignments(self) -> dict[str, Assignment]:
        if self._follows():  # a follower's view: who holds each tenant, at the highest epoch
            held: dict[str, Assignment] = {}
            for link in self._hub.live():
                for tenant, epoch in (link.held or {}).items():
                    if tenant not in held or held[tenant].epoch < epoch:
                        held[tenant] = Assignment(link.worker_id, epoch)
            return held
        return dict(self._assignments)

    def any_worker_live(self) -> bool:
        return bool(self._hub.live())

    def _next_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    async def _wait_for_workers(self, deadline: float) -> list[WorkerLink]:
        while True:
            live = self._hub.live()
            if live:
                return live
            remaining = min(deadline, time.monotonic() + WAIT_FOR_WORKER_S) - time.monotonic()
            if remaining <= 0:
                raise TenantUnavailable("No worker is connected; retry shortly.", retry_after=2)
            self._hub.changed.clear()
            try:
                await asyncio.wait_for(self._hub.changed.wait(), remaining)
            except TimeoutError:
                continue

    async def _owner(self, tenant: str, deadline: float) -> tuple[WorkerLink, int]:
        if self.follower is not None and not self.leading():
            return await self.follower.owner(tenant, deadline)
        lock = self._assign_locks.setdefault(tenant, asyncio.Lock())
        if not lock.locked():  # the usual case, without taking the lock: no change is under way
            current = self._assignments.get(tenant)
            if current is not None:
                link = self._hub.links.get(current.worker_id)
                if link is not None and link.alive:
                    return link, current.epoch
        async with lock:
            current = self._assignments.get(tenant)
            if current is not None:
                link = self._hub.links.get(current.worker_id)
                if link is not None and link.alive:
                    return link, current.epoch
                self._assignments.pop(tenant, None)
            live = await self._wait_for_workers(deadline)
            by_id = {link.worker_id: link for link in live if link.worker_id not in self.draining}
            if not by_id:  # every worker draining: serving beats refusing
                by_id = {link.worker_id: link for link in live}
            # A new tenant is not placed beside one that keeps its worker busy, if it can help it.
            calm = {w: link for w, link in by_id.items() if w not in self.cost_watch.crowded}
            by_id = calm or by_id
            owner_id = choose_owner(tenant, [Candidate(w, self._weight(w)) for w in by_id])
            assert owner_id is not None
            target = await self._clear_holders(tenant, by_id[owner_id], deadline)
            epoch = await self._assign(tenant, target, deadline)
            return target, epoch

    async def call_any(
        self, tenant: str, op: Op, args: dict[str, Any] | None = None, timeout_s: float = 0.0
    ) -> Frame:
        """Send a frame about a tenant that no worker needs to own (storage moves, summaries)."""
        deadline = time.monotonic() + (timeout_s or self._timeout_s)
        live = await self._wait_for_workers(deadline)
        by_id = {link.worker_id: link for link in live}
        chosen = choose_owner(tenant, [Candidate(w, 1.0) for w in by_id])
        assert chosen is not None
        header = {"op": op.value, "tenant": tenant, **(args or {})}
        reply = await self._exchange(by_id[chosen], header, None, deadline)
        if not reply.header.get("ok"):
            err = reply.header.get("error") or {}
            raise WorkerRefused(
                str(err.get("code", ErrorCode.INTERNAL)), str(err.get("message", "worker error"))
            )
        return reply

    async def _exchange(
        self,
        link: WorkerLink,
        header: dict[str, Any],
        arrays: dict[str, np.ndarray] | None,
        deadline: float,
    ) -> Frame:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TenantUnavailable("The request deadline passed; retry shortly.")
        rid = self._hub.next_rid()
        started = time.perf_counter()
        # The worker stops the work itself when this passes (and on CANCEL below).
        header = {**header, "deadline_ms": int(remaining * 1000)}
        fut = await link.request(rid, header, arrays)  # WorkerGone here: nothing was sent
        # A timer on the reply's future itself: what wait_for does, without its extra future.
        # (the future's loop: asyncio.get_running_loop() is a getpid system call on 3.11)
        expiry = fut.get_loop().call_later(remaining, _overdue, fut)
        try:
            reply = await fut
            outcome = "ok" if reply.header.get("ok") else "refused"
            self.observe_frame(str(header.get("op")), outcome, time.perf_counter() - started)
            return reply
        except WorkerGone as exc:
            raise FrameLost(link.worker_id) from exc
        except TimeoutError as exc:
            self.observe_frame(str(header.get("op")), "timeout", time.perf_counter() - started)
            link.cancel(rid)
            raise ReplyOverdue(
                "The worker did not answer before the deadline; retry shortly."
            ) from exc
        except asyncio.CancelledError:
            link.cancel(rid)  # the client went away: its work is wasted
            raise
        finally:
            expiry.cancel()

    async def call(
        self,
        tenant: str,
        op: Op,
        args: dict[str, Any] | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        *,
        retry: bool = True,
        timeout_s: float | None = None,
        spent_s: float = 0.0,
    ) -> Frame:
        """Send one data frame to the tenant's owner and return the OK reply.

        Raises WorkerRefused for an error reply and TenantUnavailable when no
        owner answered in time. ``retry`` says the frame may be sent again to
        a new owner if the first one vanished (idempotent operations).
        ``timeout_s`` replaces the request timeout (backups and restores take long).
        ``spent_s``: what the request already cost before it was routed (reading a large
        body, api/query_desk.py), counted with its round trip when a filtered request
        is paced.
        """
        if not (args or {}).get("filter"):
            deadline = time.monotonic() + timeout_s if timeout_s else None
            return await self._call(tenant, op, args, arrays, retry, deadline)
        deadline = time.monotonic() + self._timeout_s
        try:
            admitted = await asyncio.wait_for(
                self._filtered.enter(tenant), deadline - time.monotonic()
            )
        except TimeoutError:
            admitted = False
        if not admitted:
            raise TenantUnavailable(
                "Too many of this client's filtered requests are running; retry shortly."
            )
        began = time.monotonic()
        try:
            return await self._call(tenant, op, args, arrays, retry, deadline)
        finally:
            self._filtered.leave(tenant, time.monotonic() - began + spent_s)

    def _enter(self, tenant: str) -> None:
        self._inflight[tenant] = self._inflight.get(tenant, 0) + 1
        self.recent_clients.seen(tenant)

    def _others_served(self, tenant: str) -> bool:
        """Whether a tenant other than ``tenant`` was routed within CONTENDED_WINDOW_S."""
        return self.recent_clients.others(tenant)

    def _leave(self, tenant: str) -> None:
        left = self._inflight[tenant] - 1
        if left:
            self._inflight[tenant] = left
            return
        del self._inflight[tenant]
        idle = self._idle.get(tenant)
        if idle is not None:
            idle.set()

    async def _call(
        self,
        tenant: str,
        op: Op,
        args: dict[str, Any] | None,
        arrays: dict[str, np.ndarray] | None,
        retry: bool,
        deadline: float | None = None,
    ) -> Frame:
        deadline = deadline or time.monotonic() + self._timeout_s
        attempts = 2 if retry else 1
        # Set once a write frame went out and its answer was lost: from then on
        # only a successful reply may be answered as anything but OutcomeUnknown.
        unknown = False
        # A NOT_OWNER refusal means nothing was applied: asking the owner again is safe
        # for any operation (a follower's guess of the owner may be a heartbeat old).
        not_owner_left = 2
        attempt = -1
        while attempt + 1 < attempts:
            attempt += 1
            try:
                link, epoch = await self._owner(tenant, deadline)
            except TenantUnavailable:
                if unknown:
                    raise OutcomeUnknown(_UNKNOWN) from None
                raise
            except WorkerGone:
                # The chosen owner died during ASSIGN: no data frame went to it.
                if attempt + 1 < attempts:
                    continue
                if unknown:
                    raise OutcomeUnknown(_UNKNOWN) from None
                raise TenantUnavailable(
                    "The worker chosen for this tenant went away; retry shortly."
                ) from None
            header = {"op": op.value, "tenant": tenant, "epoch": epoch, **(args or {})}
            # Counted only once routed, so a drain never waits on a request
            # that is itself waiting for the tenant's lock.
            self._enter(tenant)
            try:
                reply = await self._exchange(link, header, arrays, deadline)
            except ReplyOverdue:
                if unknown or op in WRITE_OPS:
                    raise OutcomeUnknown(_UNKNOWN) from None
                raise
            except WorkerGone as exc:
                unknown = unknown or (isinstance(exc, FrameLost) and op in WRITE_OPS)
                if attempt + 1 < attempts:
                    continue
                if unknown:
                    raise OutcomeUnknown(_UNKNOWN) from None
                raise TenantUnavailable(
                    "The worker serving this tenant went away; retry shortly."
                ) from None
            except TenantUnavailable:
                if unknown:
                    raise OutcomeUnknown(_UNKNOWN) from None
                raise
            finally:
                self._leave(tenant)
            cost = reply.header.get("cost")
            if isinstance(cost, int) and not isinstance(cost, bool) and cost > 0:
                self.charge_cost(tenant, cost)
            if reply.header.get("ok"):
                self._hits[tenant] = self._hits.get(tenant, 0) + 1
                return reply
            err = reply.header.get("error") or {}
            code = str(err.get("code", ErrorCode.INTERNAL))
            if code == ErrorCode.NOT_OWNER and (attempt + 1 < attempts or not_owner_left):
                if self.follower is not None and self._follows():
                    self.follower.forget(link, tenant, epoch)
                self._assignments.pop(tenant, None)
                if not_owner_left and not unknown:
                    not_owner_left -= 1
                    attempt -= 1  # this attempt wrote nothing: it does not count
                continue
            if unknown:
                # The lost first attempt may have been applied: a refusal of the
                # retry (busy, quota, not owner) says nothing about it.
                raise OutcomeUnknown(_UNKNOWN)
            raise WorkerRefused(code, str(err.get("message", "worker error")))
        if unknown:
            raise OutcomeUnknown(_UNKNOWN)
        raise TenantUnavailable("No worker could serve the tenant; retry shortly.")

"""What each tenant costs its worker, for the rebalancer: busy threads from heartbeats.

Workers report, in every heartbeat, the thread-seconds each tenant's requests have
held their request threads (cumulative). Between two looks of the rebalancer the
difference per second is the tenant's busy figure, in threads: 1.0 when one of its
requests was running the whole time. The worker's Python work (filters, scans,
writes) shares one interpreter lock, so a tenant that keeps one thread busy all the
time takes most of the interpreter from its neighbours, whatever the core count.
Few but expensive requests show here, where a request rate would not. The watch
also remembers which tenants saturated at the previous look and which were moved
lately, so one burst moves nothing and nothing flaps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coordinator.hub import WorkerLink
from coordinator.placement import Move, plan_isolation, plan_rebalance, saturating


@dataclass(frozen=True, slots=True)
class IsolationPolicy:
    """VP_REBALANCE_BUSY_THREADS and VP_REBALANCE_COOLDOWN_S."""

    busy_threads: float = 0.8
    cooldown_s: float = 300.0


@dataclass(slots=True)
class _Counters:
    at: float
    seconds: dict[str, float]


@dataclass
class CostWatch:
    """Busy threads per worker and tenant between looks; the rebalancer's memory."""

    policy: IsolationPolicy = field(default_factory=IsolationPolicy)
    _seen: dict[str, _Counters] = field(default_factory=dict)
    _saturated: set[str] = field(default_factory=set)
    _moved_at: dict[str, float] = field(default_factory=dict)
    # Workers hosting a saturating tenant at the last look: new tenants go elsewhere.
    crowded: set[str] = field(default_factory=set)

    def sample(
        self, links: Iterable[WorkerLink], owner_of: Callable[[str], str | None]
    ) -> dict[str, dict[str, float]]:
        """Worker -> {tenant: busy threads} since the last sample, for tenants it owns.

        A tenant new on a worker (or a worker that restarted: counters went down)
        has no figure until the next sample.
        """
        shares: dict[str, dict[str, float]] = {}
        for link in links:
            worker, current = link.worker_id, link.busy
            shares[worker] = {}
            if current is None:
                continue
            before = self._seen.get(worker)
            if before is not None and link.busy_at <= before.at:
                continue  # no heartbeat since: keep the older counters as the base
            if before is not None:
                elapsed = link.busy_at - before.at
                for tenant, seconds in current.items():
                    old = before.seconds.get(tenant)
                    if old is None or seconds < old or owner_of(tenant) != worker:
                        continue
                    shares[worker][tenant] = (seconds - old) / elapsed
            self._seen[worker] = _Counters(link.busy_at, dict(current))
        for gone in set(self._seen) - set(shares):
            del self._seen[gone]
        return shares

    def plan(
        self, rates: dict[str, dict[str, float]], busy: dict[str, dict[str, float]], now: float
    ) -> Move | None:
        """The one move to make now: isolate a saturating tenant, else spread request rates."""
        hot = saturating(busy, self.policy.busy_threads)
        for tenant, at in list(self._moved_at.items()):
            if now - at >= self.policy.cooldown_s:
                del self._moved_at[tenant]
        persistent = (set(hot) & self._saturated) - set(self._moved_at)
        self._saturated = set(hot)
        self.crowded = set(hot.values())
        move = plan_isolation(rates, busy, persistent, hot)
        if move is None:
            # Rate-based moves never put anyone beside a saturating tenant.
            move = plan_rebalance(rates, avoid=set(hot.values()))
            if move is not None and move.tenant in self._moved_at:
                return None
        return move

    def moved(self, tenant: str, now: float) -> None:
        """A tenant was moved: leave it where it is for the cooldown."""
        self._moved_at[tenant] = now
        self._saturated.discard(tenant)

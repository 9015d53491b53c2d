"""Placement model: which live worker owns a tenant (weighted rendezvous hashing)."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import xxhash


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live worker that may own tenants, with its placement weight (> 0)."""

    worker_id: str
    weight: float = 1.0


def _unit_hash(tenant: str, worker_id: str) -> float:
    """A stable hash of (tenant, worker) mapped into the open interval (0, 1)."""
    h = xxhash.xxh3_64_intdigest(f"{tenant}\x00{worker_id}".encode())
    return (h + 0.5) / 2.0**64


def choose_owner(tenant: str, candidates: Sequence[Candidate]) -> str | None:
    """Pick the owner of ``tenant``: highest weighted rendezvous score wins.

    Removing a worker only moves the tenants it owned; adding one moves about
    1/N of them. Weights skew the share each worker gets.
    """
    best: tuple[float, str] | None = None
    for cand in candidates:
        if cand.weight <= 0:
            continue
        score = -cand.weight / math.log(_unit_hash(tenant, cand.worker_id))
        if best is None or (score, cand.worker_id) > best:
            best = (score, cand.worker_id)
    return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class Move:
    """Hand ``tenant`` from one worker to another."""

    tenant: str
    source: str
    target: str


def plan_rebalance(
    rates: dict[str, dict[str, float]],
    overload: float = 1.5,
    floor: float = 5.0,
    avoid: Collection[str] = (),
) -> Move | None:
    """Pick at most one hot tenant to move off an overloaded worker.

    ``rates`` maps worker id -> {tenant: requests per second}. A worker is
    overloaded when its total is above ``overload`` times the mean and above
    ``floor`` req/s. Its hottest tenant that still fits moves to the least
    loaded worker, but only if that lowers the busiest worker's load; a
    worker's only tenant is never moved (it would just move the hot spot). Workers
    in ``avoid`` (those a saturating tenant was isolated on) receive no tenant.
    """
    if len(rates) < 2:
        return None
    totals = {w: sum(t.values()) for w, t in rates.items()}
    mean = sum(totals.values()) / len(totals)
    source = max(totals, key=lambda w: (totals[w], w))
    targets = [w for w in totals if w not in avoid and w != source]
    if not targets:
        return None
    target = min(targets, key=lambda w: (totals[w], w))
    if totals[source] <= max(floor, overload * mean) or len(rates[source]) < 2:
        return None
    gap = totals[source] - totals[target]
    for tenant, rate in sorted(rates[source].items(), key=lambda kv: (-kv[1], kv[0])):
        if 0 < rate < gap:
            return Move(tenant, source, target)
    return None


# A tenant keeping fewer threads than this busy, with no requests, is idle.
IDLE_THREADS = 0.05


def saturating(busy: dict[str, dict[str, float]], threshold: float) -> dict[str, str]:
    """Tenant -> worker, for each tenant that kept at least ``threshold`` threads busy.

    ``busy`` maps worker id -> {tenant: threads}: the thread-seconds the tenant's
    requests held the worker's request threads for, per second (1.0: one request of
    it running all the time).
    """
    return {
        tenant: worker
        for worker, shares in busy.items()
        for tenant, threads in shares.items()
        if threads >= threshold
    }


def _active(
    worker: str, rates: dict[str, dict[str, float]], busy: dict[str, dict[str, float]]
) -> set[str]:
    """Tenants of ``worker`` that sent requests or kept threads busy in the sample."""
    shares = busy.get(worker, {})
    sending = {t for t, rate in rates.get(worker, {}).items() if rate > 0}
    return sending | {t for t, threads in shares.items() if threads > IDLE_THREADS}


def plan_isolation(
    rates: dict[str, dict[str, float]],
    busy: dict[str, dict[str, float]],
    persistent: set[str],
    hot: dict[str, str],
) -> Move | None:
    """Move a tenant that saturates a worker it shares away from its neighbours.

    ``persistent`` are the tenants saturating in this sample and the previous one
    (and not moved lately): one busy burst moves nothing. The hot tenant moves,
    not its neighbours: one move relieves every neighbour however many there
    are, the move's pause (draining in-flight requests, loading elsewhere) falls
    on the tenant that caused it, and the quiet tenants keep their warm caches.
    It goes to the worker with the fewest active tenants that hosts no saturating
    tenant, and only if that is fewer than the neighbours it leaves: so it never
    moves back (its old worker has at least as many active tenants as it met),
    and a tenant already alone, or beside idle tenants only, stays.
    ``rates`` (requests per second) and ``busy`` (threads) map worker -> {tenant: x}
    and list the workers a tenant may go to.
    """
    workers = set(rates) | set(busy)
    crowded = set(hot.values())
    order = sorted(persistent, key=lambda t: (-busy.get(hot.get(t, ""), {}).get(t, 0.0), t))
    for tenant in order:
        source = hot.get(tenant)
        if source is None:
            continue
        neighbours = _active(source, rates, busy) - {tenant}
        targets = sorted(
            (
                len(_active(w, rates, busy)),
                sum(busy.get(w, {}).values()),
                sum(rates.get(w, {}).values()),
                w,
            )
            for w in workers
            if w != source and w not in crowded
        )
        if neighbours and targets and targets[0][0] < len(neighbours):
            return Move(tenant, source, targets[0][3])
    return None

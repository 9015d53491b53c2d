"""Placement model: which live worker owns a tenant (weighted rendezvous hashing)."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    rates: dict[str, dict[str, float]], overload: float = 1.5, floor: float = 5.0
) -> Move | None:
    """Pick at most one hot tenant to move off an overloaded worker.

    ``rates`` maps worker id -> {tenant: requests per second}. A worker is
    overloaded when its total is above ``overload`` times the mean and above
    ``floor`` req/s. Its hottest tenant that still fits moves to the least
    loaded worker, but only if that lowers the busiest worker's load; a
    worker's only tenant is never moved (it would just move the hot spot).
    """
    if len(rates) < 2:
        return None
    totals = {w: sum(t.values()) for w, t in rates.items()}
    mean = sum(totals.values()) / len(totals)
    source = max(totals, key=lambda w: (totals[w], w))
    target = min(totals, key=lambda w: (totals[w], w))
    if totals[source] <= max(floor, overload * mean) or len(rates[source]) < 2:
        return None
    gap = totals[source] - totals[target]
    for tenant, rate in sorted(rates[source].items(), key=lambda kv: (-kv[1], kv[0])):
        if 0 < rate < gap:
            return Move(tenant, source, target)
    return None

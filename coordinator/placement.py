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

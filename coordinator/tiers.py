"""Tiers and their limits: the one table, and the pure decisions made from it.

Quotas on stored data (collections, vectors) are enforced atomically by the
worker that owns the tenant; the coordinator passes the caps from this table
along with each write. The dimension cap and the request rate are decided here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from eventlog.events import Tier


@dataclass(frozen=True, slots=True)
class TierLimits:
    """What one tier allows a client."""

    max_collections: int
    max_vectors: int  # across all the client's collections
    max_dimension: int
    requests_per_second: float  # sustained data-plane request rate
    burst: int  # requests allowed at once after an idle spell
    # Longest an API key may live, and what a key issued without ``expires_at`` gets;
    # None: keys of this tier may be issued without an expiry.
    max_key_lifetime_days: int | None = None


# The single source of tier limits. Change a tier here and nowhere else.
TIERS: dict[str, TierLimits] = {
    Tier.FREE: TierLimits(
        max_collections=5,
        max_vectors=100_000,
        max_dimension=1536,
        requests_per_second=25,
        burst=50,
        max_key_lifetime_days=90,
    ),
    Tier.STANDARD: TierLimits(
        max_collections=50,
        max_vectors=5_000_000,
        max_dimension=4096,
        requests_per_second=250,
        burst=500,
        max_key_lifetime_days=365,
    ),
    Tier.PREMIUM: TierLimits(
        max_collections=500,
        max_vectors=100_000_000,
        max_dimension=4096,
        requests_per_second=5000,
        burst=10_000,
    ),
}

# A tier name this table does not know gets the most restrictive limits.
FALLBACK_TIER = Tier.FREE


def limits_for(tier: str) -> TierLimits:
    """The limits of ``tier``; unknown tiers get the free tier's."""
    return TIERS.get(tier, TIERS[FALLBACK_TIER])


def effective_max_dimension(tier: str, server_max: int) -> int:
    """The largest dimension this tier may create on this server."""
    return min(limits_for(tier).max_dimension, server_max)


def dimension_refusal(tier: str, dimension: int, server_max: int) -> str | None:
    """Why a collection of ``dimension`` may not be created, or None if it may."""
    limit = effective_max_dimension(tier, server_max)
    if 1 <= dimension <= limit:
        return None
    if limit < server_max:
        return (
            f"dimension must be between 1 and {limit}: the {tier} tier allows at most "
            f"{limit} dimensions (higher tiers allow up to {server_max})"
        )
    return f"dimension must be between 1 and {limit}"


def usage_limits(tier: str, server_max_dimension: int) -> dict[str, Any]:
    """The tier's limits as ``GET /v1/usage`` reports them."""
    limits = asdict(limits_for(tier))
    limits.pop("max_key_lifetime_days")  # an admin-plane rule, not a data-plane limit
    limits["max_dimension"] = effective_max_dimension(tier, server_max_dimension)
    return limits


# Daily backups kept per tier (the scheduler takes one a day for a client with changes);
# a client's newest backup is never pruned, so a paused client always keeps one.
BACKUP_RETENTION: dict[str, int] = {Tier.FREE: 7, Tier.STANDARD: 30, Tier.PREMIUM: 90}


def backup_retention(tier: str) -> int:
    """How many daily backups of a client on ``tier`` are kept."""
    return BACKUP_RETENTION.get(tier, BACKUP_RETENTION[FALLBACK_TIER])

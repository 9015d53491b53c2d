"""A token bucket per client for the data-plane request rate.

The rate and burst come with every call (from the client's tier at that
moment), so a tier change applies to the very next request. Decisions are pure
arithmetic on an injected clock; nothing here awaits or sleeps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """Tokens available at ``updated`` (monotonic seconds)."""

    tokens: float
    updated: float
    burst: float = 0.0  # at the last acquire: bounds the debt a cost charge may run up

    def refill(self, now: float, rate: float, burst: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(burst, self.tokens + elapsed * rate)
        self.updated = now


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may proceed, and if not, when to retry (whole seconds, >= 1)."""

    allowed: bool
    retry_after: int = 0


ALLOW = Decision(True)

# A request's cost beyond its token: rows a worker examined for it (filter, scan) and
# its filter operands, one token per this many. A scan of a million rows weighs as
# much as 100 simple requests.
ROWS_PER_TOKEN = 10_000


def cost_tokens(cost: int) -> float:
    """Tokens a worker-reported cost takes from the client's bucket, after the request."""
    return max(0, cost) / ROWS_PER_TOKEN


def over_rate_message(tier: str, rate: float, burst: int, retry_after: int) -> str:
    """A refusal's message: the tier's rate, and how a request counts against it (a
    client sending fewer requests a second than the rate can still be over it)."""
    return (
        f"Over the {tier} tier's rate of {rate:g} requests/s (burst {burst}; a request "
        f"counts 1 plus 1 per {ROWS_PER_TOKEN:,} rows or vectors it examined); "
        f"retry after {retry_after} s."
    )


class RateLimiter:
    """Token buckets keyed by client id, bounded in memory.

    A bucket that has refilled to its burst is the same as no bucket, so idle
    clients are dropped once there are more than ``max_clients`` buckets.
    """

    def __init__(
        self, max_clients: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._max_clients = max_clients
        self._clock = clock

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, client_id: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from the client's bucket if it holds them."""
        if rate <= 0:
            return ALLOW  # a tier without a rate limit
        now = self._clock()
        bucket = self._buckets.get(client_id)
        if bucket is None:
            if len(self._buckets) >= self._max_clients:
                self._prune(now)
            bucket = self._buckets[client_id] = TokenBucket(tokens=burst, updated=now)
        else:
            bucket.refill(now, rate, burst)
        bucket.burst = burst
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return ALLOW
        # A refused request takes nothing, so a client that backs off is not punished twice.
        wait = (cost - bucket.tokens) / rate
        return Decision(False, max(1, math.ceil(wait)))

    def charge(self, client_id: str, tokens: float) -> None:
        """Take ``tokens`` for work already done, into debt down to minus the burst.

        The client's next requests wait until the bucket refills past the debt, so
        expensive requests are paid for even though their cost is known only after.
        """
        bucket = self._buckets.get(client_id)
        if bucket is None or tokens <= 0:
            return  # no bucket: the client has no rate limit (or it was pruned as idle)
        bucket.tokens = max(-bucket.burst, bucket.tokens - tokens)

    def _prune(self, now: float) -> None:
        """Forget buckets idle long enough to be full again (at any plausible rate)."""
        stale = [cid for cid, b in self._buckets.items() if now - b.updated > 60.0]
        for cid in stale:
            del self._buckets[cid]
        if len(self._buckets) >= self._max_clients:
            # Still full of active clients: drop the longest idle half.
            by_age = sorted(self._buckets, key=lambda cid: self._buckets[cid].updated)
            for cid in by_age[: len(by_age) // 2]:
                del self._buckets[cid]

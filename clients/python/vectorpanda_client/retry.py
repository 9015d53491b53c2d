"""When to retry a failed exchange, and how long to wait: exponential backoff, jitter,
and never less than the server's ``Retry-After``."""

from __future__ import annotations

import random
from dataclasses import dataclass

from vectorpanda_client.errors import ConnectionFailed, VectorPandaError

# Codes that mean "the same request will succeed later". quota_exceeded is a 429
# too, but waiting does not free quota, so it is not retried.
RETRYABLE_CODES = frozenset({"rate_limited", "unavailable", "busy"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries on 429 ``rate_limited``, 503, and connections that never got through."""

    max_retries: int = 6
    base_delay: float = 0.2
    max_delay: float = 20.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Equal-jitter exponential backoff for retry number ``attempt`` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def delay(
        self, attempt: int, error: VectorPandaError, idempotent: bool, rng: random.Random
    ) -> float | None:
        """Seconds to wait before retrying, or None to give up and raise ``error``."""
        if attempt >= self.max_retries or not retryable(error, idempotent):
            return None
        if isinstance(error, ConnectionFailed) and error.refused:
            # One short retry covers a server that is just restarting; more would only
            # make a wrong URL look like a slow service.
            return self.base_delay if attempt == 0 else None
        wait = self.backoff(attempt, rng)
        if error.retry_after:
            # Honour the server's floor; a little jitter keeps clients from waking together.
            wait = max(wait, error.retry_after + rng.uniform(0, self.base_delay))
        return wait


NO_RETRIES = RetryPolicy(max_retries=0)


def retryable(error: VectorPandaError, idempotent: bool) -> bool:
    """Whether repeating the same request can succeed where this one failed."""
    if isinstance(error, ConnectionFailed):
        return not error.sent or idempotent
    if error.code in RETRYABLE_CODES:
        return True
    if error.code == "outcome_unknown":  # the write may have been applied
        return idempotent
    return error.status == 503
